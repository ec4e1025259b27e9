# stompgate gateway image.
#   docker build -t stompgate .
#   docker run -p 8080:8080 stompgate                      (embedded demo feed)
#   docker run -e STOMPGATE_KAFKA_BROKERS=kafka:9092 ...   (Kafka bus)

# ---- build: Rust >= 1.88 (the locked crates need it; Cargo.toml says rust-version = "1.88").
# rdkafka compiles librdkafka from source (its default build: a C toolchain, make and zlib
# headers; no cmake).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential make pkg-config zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stompgate \
 && install -m 0755 target/release/stompgate /usr/local/bin/stompgate

# ---- run
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home stompgate
COPY --from=build /usr/local/bin/stompgate /usr/local/bin/stompgate
USER stompgate
ENV STOMPGATE_PORT=8080 \
    STOMPGATE_BIND=0.0.0.0 \
    RUST_LOG=info
EXPOSE 8080
# Liveness only: /healthz answers while the process serves HTTP. /readyz (503 while Kafka is
# unreachable or while draining) is for load balancers (nginx, a Kubernetes readinessProbe),
# so a Kafka outage takes replicas out of rotation without restarting healthy ones.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${STOMPGATE_PORT}/healthz" || exit 1
# SIGTERM lets the gateway drain: /readyz turns 503 and clients are told to reconnect.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stompgate"]

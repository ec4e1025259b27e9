#!/usr/bin/env bash
# Benchmark peers: RabbitMQ Web-STOMP (Debian package), a minimal Spring Boot app with
# Spring's STOMP SimpleBroker (bench/spring-broker) and Bun's built-in WebSocket pub/sub
# speaking the ceiling's STOMP subset (bench/bun-peer, `bun` from npm). All at their
# defaults, except the RabbitMQ node's open-file limit and Bun's idle timeout (see below).
#
#   scripts/bench-peers.sh install [rabbitmq|spring|bun|all]   (default all)
#   scripts/bench-peers.sh start rabbitmq     start; prints "pid <n> url <ws-url>"
#   scripts/bench-peers.sh start spring|bun [port]
#   scripts/bench-peers.sh stop rabbitmq|spring|bun|all
#   scripts/bench-peers.sh versions [rabbitmq|spring|bun ...]   one line per peer
#
# Loopback only. Nothing here is left running by scripts/bench.sh: it stops them on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${BENCH_STATE_DIR:-$ROOT/target/bench}"
SPRING_DIR="$ROOT/bench/spring-broker"
SPRING_JAR="$SPRING_DIR/target/spring-broker.jar"
BUN_DIR="$ROOT/bench/bun-peer"
RABBIT_WS_PORT=15674
mkdir -p "$STATE"

log() { echo "bench-peers: $*" >&2; }

wait_port() { # port seconds
  local port=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "installing rabbitmq-server (Debian package)"
    as_root apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q rabbitmq-server >/dev/null
    # The package may start a node of its own; the benchmark starts its own.
    as_root rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  # The Debian wrapper starts the node through `su rabbitmq`, which resets the soft
  # open-file limit to 1024: with ~1,000 clients the node raises its fd alarm and stops
  # accepting. Raise it to the hard limit of the build machines.
  local env=/etc/rabbitmq/rabbitmq-env.conf
  if ! grep -qs '^ulimit -n' "$env"; then
    echo 'ulimit -n 20000' | as_root tee -a "$env" >/dev/null
  fi
  as_root rabbitmq-plugins --offline enable rabbitmq_web_stomp >/dev/null
}

install_spring() {
  if [ ! -f "$SPRING_JAR" ] || [ -n "$(find "$SPRING_DIR/src" "$SPRING_DIR/pom.xml" -newer "$SPRING_JAR" 2>/dev/null)" ]; then
    log "building bench/spring-broker with Maven"
    (cd "$SPRING_DIR" && mvn -q -B package -DskipTests)
  fi
}

install_bun() {
  # The lockfile pins bun and its platform binary (@oven/bun-linux-x64).
  if [ ! -x "$(bun_bin)" ]; then
    log "installing bun into bench/bun-peer (npm ci)"
    (cd "$BUN_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  [ -x "$(bun_bin)" ] || { log "no bun binary after npm ci in $BUN_DIR"; return 1; }
}

# The bun executable itself (not a wrapper script), so that the pid measured is Bun's.
bun_bin() {
  local c
  for c in "$BUN_DIR/node_modules/bun/bin/bun.exe" "$BUN_DIR/node_modules/@oven/bun-linux-x64/bin/bun"; do
    if [ -x "$c" ] && [ "$(head -c 4 "$c" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      echo "$c"; return 0
    fi
  done
  echo "$BUN_DIR/node_modules/.bin/bun"
}

start_bun() {
  local port=${1:-15676}
  install_bun || return 1
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is still taken"; return 1
  fi
  "$(bun_bin)" "$BUN_DIR/server.js" --port "$port" >"$STATE/bun.log" 2>&1 &
  echo $! >"$STATE/bun.pid"
  wait_port "$port" 30 || { log "Bun peer did not open port $port (see $STATE/bun.log)"; return 1; }
  echo "pid $(cat "$STATE/bun.pid") url ws://127.0.0.1:$port/ws"
}

stop_bun() {
  if [ -f "$STATE/bun.pid" ]; then
    local p; p="$(cat "$STATE/bun.pid")"
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    rm -f "$STATE/bun.pid"
  fi
}

rabbit_pid() { pgrep -f 'beam.smp.*rabbit' | head -1; }

start_rabbitmq() {
  local try
  for try in 1 2 3; do
    if [ -z "$(rabbit_pid)" ]; then
      as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    as_root timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
    if wait_port $RABBIT_WS_PORT 60; then
      echo "pid $(rabbit_pid) url ws://127.0.0.1:$RABBIT_WS_PORT/ws"
      return 0
    fi
    log "RabbitMQ Web-STOMP did not open port $RABBIT_WS_PORT (try $try); restarting the node"
    stop_rabbitmq
  done
  return 1
}

stop_rabbitmq() {
  local p i
  p="$(rabbit_pid)"
  [ -n "$p" ] || return 0
  # With thousands of clients the node takes a while to close them: wait for it to exit,
  # or the next start finds the old node still registered.
  as_root timeout 90 rabbitmqctl stop >/dev/null 2>&1 || true
  for ((i = 0; i < 300; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then as_root kill -9 "$p" 2>/dev/null || true; sleep 1; fi
}

start_spring() {
  local port=${1:-15675}
  install_spring
  # Defaults of Spring Boot and of the JVM; only the port is set.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is still taken"; return 1
  fi
  java -jar "$SPRING_JAR" --server.port="$port" >"$STATE/spring.log" 2>&1 &
  echo $! >"$STATE/spring.pid"
  wait_port "$port" 90 || { log "Spring app did not open port $port (see $STATE/spring.log)"; return 1; }
  sleep 1
  kill -0 "$(cat "$STATE/spring.pid")" 2>/dev/null || { log "Spring app exited (see $STATE/spring.log)"; return 1; }
  echo "pid $(cat "$STATE/spring.pid") url ws://127.0.0.1:$port/ws"
}

stop_spring() {
  if [ -f "$STATE/spring.pid" ]; then
    local p; p="$(cat "$STATE/spring.pid")"
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$STATE/spring.pid"
  fi
}

versions() {
  local which="${*:-rabbitmq spring bun}"
  case " $which " in *" rabbitmq "*)
    echo "rabbitmq: $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo none) (Debian package), erlang $(dpkg-query -W -f='${Version}' erlang-base 2>/dev/null || echo '?')" ;;
  esac
  case " $which " in *" spring "*)
    local boot
    boot="$(sed -n '/<parent>/,/<\/parent>/s:.*<version>\(.*\)</version>.*:\1:p' "$SPRING_DIR/pom.xml")"
    echo "spring: Spring Boot $boot (spring-boot-starter-websocket, SimpleBroker, embedded Tomcat), $(java -version 2>&1 | head -1)" ;;
  esac
  case " $which " in *" bun "*)
    echo "bun: Bun $("$(bun_bin)" --version 2>/dev/null || echo '?') (Bun.serve WebSocket pub/sub, uWebSockets; bench/bun-peer/server.js)" ;;
  esac
}

case "${1:-}" in
  install)
    case "${2:-all}" in
      rabbitmq) install_rabbitmq ;;
      spring) install_spring ;;
      bun) install_bun ;;
      all) install_rabbitmq; install_spring; install_bun ;;
      *) echo "usage: $0 install [rabbitmq|spring|bun|all]" >&2; exit 2 ;;
    esac ;;
  start)
    case "${2:-}" in
      rabbitmq) start_rabbitmq ;;
      spring) start_spring "${3:-}" ;;
      bun) start_bun "${3:-}" ;;
      *) echo "usage: $0 start rabbitmq|spring|bun [port]" >&2; exit 2 ;;
    esac ;;
  stop)
    case "${2:-all}" in
      rabbitmq) stop_rabbitmq ;;
      spring) stop_spring ;;
      bun) stop_bun ;;
      all) stop_bun; stop_spring; stop_rabbitmq ;;
    esac ;;
  versions) shift; versions "$@" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs everything the test command needs on a fresh Debian machine with Rust, Java,
# Node and Python present (idempotent; quick when all is there; no prompts):
#   - Kafka jars, nginx, Python test clients   (scripts/install/kafka-nginx.sh)
#   - Chromium, fonts, playwright-core, vendored dashboard libraries (scripts/install/e2e.sh)
#   - Prometheus, promtool, blackbox exporter  (scripts/install/observability.sh)
#   - @stomp/stompjs and ws for the Node client tests (tests/node)
#   - cargo-fuzz for the parser fuzz run, cargo-deny for the dependency policy (deny.toml)
# Rust's default build of rdkafka compiles librdkafka from source with the C toolchain,
# make and zlib headers; they are installed here too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DEBIAN_FRONTEND=noninteractive

need=()
for p in build-essential zlib1g-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
  echo "[install] apt-get install ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

bash scripts/install/kafka-nginx.sh
bash scripts/install/e2e.sh
bash scripts/install/observability.sh
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
command -v cargo-fuzz >/dev/null 2>&1 || {
  echo "[install] cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
}
command -v cargo-deny >/dev/null 2>&1 || {
  echo "[install] cargo install cargo-deny"
  cargo install cargo-deny --version 0.20.2 --locked --quiet
}
echo "[install] done"

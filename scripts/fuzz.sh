#!/usr/bin/env bash
# Fuzzes the STOMP parser with cargo-fuzz (libFuzzer) for a bounded time and prints how many
# inputs ran. Usage: scripts/fuzz.sh [seconds]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# libFuzzer needs unstable compiler flags: use a nightly toolchain when one is installed,
# otherwise let the stable compiler accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
mkdir -p target/fuzz-corpus
cp -n fuzz/corpus/parse/* target/fuzz-corpus/ 2>/dev/null || true
echo "fuzz: building the parse target"
(cd fuzz && "${FUZZ[@]}" build parse -O)
echo "fuzz: running for ${SECONDS_TO_RUN}s"
log=target/fuzz-parse.log
(cd fuzz && "${FUZZ[@]}" run parse -O ../target/fuzz-corpus -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -print_final_stats=1) 2>"$log" || {
  tail -40 "$log"; echo "fuzz: the parser crashed; the input is under fuzz/artifacts/parse/"; exit 1; }
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
echo "fuzz: ${runs} inputs ran in ${SECONDS_TO_RUN}s without a crash"

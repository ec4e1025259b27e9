#!/usr/bin/env bash
# Runs every test of stompgate, installing what they need first (skip that with
# SKIP_INSTALL=1):
#   1. cargo fmt --check and clippy, then cargo deny (licenses, bans, sources; deny.toml)
#   2. Rust unit, property and integration tests (real gateway on 127.0.0.1:0)
#   3. the parser fuzzer, bounded (FUZZ_SECONDS, default 30)
#   4. @stomp/stompjs in Node against the gateway
#   5. Python: stomp-py, real Kafka (KRaft, from Maven jars), real nginx, deployment files
#   6. the dashboard in headless Chromium (Playwright)
#   7. the benchmark tool's smoke mode
#   8. the compose stack on a container engine started here (scripts/compose-test.sh), last
#      and alone: it loads the machine fully; skipped where no engine can be started
# Ends with one line "N passed, N failed, N skipped" over all suites.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"
export STOMPGATE_BIN="$ROOT/target/debug/stompgate"
PASSED=0
FAILED=0
SKIPPED=0

step() { echo; echo "==== $* ($(date +%H:%M:%S))"; }

totals() { echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; }

# Runs a suite, keeps its output, and adds its counts (parsed by `counter`: "passed failed"
# or "passed failed skipped") to the totals.
suite() {
  local name="$1" counter="$2"; shift 2
  step "$name"
  local log="$LOGS/$name.log" rc=0
  "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  local p f s
  read -r p f s <<<"$("$counter" "$log")"
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  SKIPPED=$((SKIPPED + ${s:-0}))
  if [ "$rc" -ne 0 ]; then
    echo "==== $name FAILED (exit $rc); log: $log"
    FAILED=$((FAILED + (f == 0 ? 1 : 0)))
    totals
    exit 1
  fi
}

cargo_counts() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { print p + 0, f + 0 }' "$1"
}
node_counts() {
  awk '/^# pass / { p += $3 } /^# fail / { f += $3 } END { print p + 0, f + 0 }' "$1"
}
pytest_counts() {
  tail -3 "$1" | awk '{ for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
       END { print p + 0, f + 0, s + 0 }'
}
fuzz_counts() { grep -q "without a crash" "$1" && echo "1 0" || echo "0 1"; }
deny_counts() { grep -q "bans ok, licenses ok, sources ok" "$1" && echo "1 0" || echo "0 1"; }
bench_counts() { grep -q "smoke: ok" "$1" && echo "1 0" || echo "0 1"; }
# pytest's counts, or one skipped when no container engine could be started.
compose_counts() {
  if grep -q "^compose: SKIPPED" "$1"; then echo "0 0 1"; return; fi
  grep -E '[0-9]+ (passed|failed|errors?|skipped).* in [0-9.]+s' "$1" | tail -1 \
    | awk '{ for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
       END { print p + 0, f + 0, s + 0 }'
}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step "install"
  bash scripts/install/all.sh
fi

step "format and lints"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# Advisories are left out: they need the advisory database fetched over the network (deny.toml).
suite deny deny_counts cargo deny --locked check bans licenses sources

suite rust cargo_counts cargo test --all-targets
suite fuzz fuzz_counts bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
suite stompjs node_counts bash -c "cd tests/node && node --test"
suite python pytest_counts python3 -m pytest tests/py -q -p no:cacheprovider
# In CI the screenshots go to target/; run locally, the test refreshes docs/screenshots.
if [ "${CI:-}" = true ]; then export SCREENSHOT_DIR="$ROOT/target/screenshots"; fi
suite e2e node_counts node --test e2e/
suite bench-smoke bench_counts bash scripts/bench.sh --smoke
# Last, with nothing else running: three JVM brokers and a release build of the gateway.
suite compose compose_counts bash scripts/compose-test.sh

echo
totals

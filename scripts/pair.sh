#!/usr/bin/env bash
# pair.sh: CPU per delivery of two servers under the same load at the same moment.
#
# On a shared machine a figure moves 5-10% between sittings, more than most changes to the
# delivery path are worth; taking turns (as bench.sh does) spreads that noise but does not
# remove it. Here both servers get scenario 2's load at once, each from its own load
# generator, so a busy minute of the machine lands on both; the ratio of the two figures
# in a round is what to read, not the figures themselves. A build against itself gives a
# median within about 2% of 1 (rounds 0.97-1.04): a smaller difference is not resolved.
#
# usage: scripts/pair.sh [--rounds N] [--rate DELIVERIES_PER_S] [--json FILE] A B
#   A, B: a stompgate binary, or `ceiling` (the bare broadcaster, target/release/ceiling),
#         or a path to a ceiling binary (its file name starts with `ceiling`), e.g. one
#         built with other compiler settings
#   --rate is per server (default 60000: two servers and two load generators fit 2 cores)
# needs: cargo build --release --bins (loadgen, ceiling)
# prints one line per round and per server, then the median ratio B/A of CPU per delivery;
# --json FILE appends the same as one line {"kind":"pair",...} (scripts/bench.sh uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
R=target/release
ROUNDS=5
RATE=60000
JSON=
while [ $# -gt 2 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ $# -eq 2 ] || { echo "usage: $0 [--rounds N] [--rate R] A B (binaries, or ceiling)" >&2; exit 2; }
for bin in "$R/loadgen" "$R/ceiling"; do
  [ -x "$bin" ] || { echo "$bin is missing: run cargo build --release --bins" >&2; exit 1; }
done
LOG=$(mktemp -d)
PIDS=()
# stop: ends the servers and waits (up to 10 s) until they are gone, so that a run
# started right after this one finds its ports free.
stop() {
  kill "${PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "${PIDS[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
}
trap stop EXIT

# is_ceiling BINARY: the bare broadcaster, by name or by path.
is_ceiling() { case "$(basename "$1")" in ceiling*) return 0 ;; *) return 1 ;; esac; }

# start NAME BINARY PORT: starts one server; prints its pid.
start() {
  if is_ceiling "$2"; then
    bin=$2; [ "$bin" = ceiling ] && bin=$R/ceiling
    "$bin" --port "$3" >"$LOG/$1.log" 2>&1 &
  else
    "$2" --bind 127.0.0.1 --port "$3" --demo-rate 0 --send-rate 0 --max-connections-per-ip 0 \
      --connect-rate-per-ip 0 --max-http-connections-per-ip 0 --max-http-connections 20000 \
      >"$LOG/$1.log" 2>&1 &
  fi
  echo $!
}
PA=$(start A "$1" 18431); PIDS+=("$PA")
PB=$(start B "$2" 18432); PIDS+=("$PB")
sleep 2
for side in A B; do
  pid=$PA; [ $side = B ] && pid=$PB
  kill -0 "$pid" 2>/dev/null || { echo "server $side did not start:" >&2; cat "$LOG/$side.log" >&2; exit 1; }
done
echo "A = $1, B = $2, $ROUNDS rounds of ${RATE} deliveries/s each, at the same time (logs in $LOG)"

ratios=()
for round in $(seq "$ROUNDS"); do
  loads=()
  # Every other round B's load starts first and takes A's source addresses: whatever
  # favours the first started, or one address range, favours each side equally often.
  if [ $((round % 2)) = 1 ]; then order=(A B); else order=(B A); fi
  for t in "${order[@]}"; do
    if [ "$t" = "${order[0]}" ]; then base=40; else base=60; fi
    if [ $t = A ]; then bin=$1 pid=$PA port=18431; else bin=$2 pid=$PB port=18432; fi
    if is_ceiling "$bin"; then send=(--send-template '/topic/market/M{i}' --pad 252)
    else send=(--send-template '/app/market/M{i}/chat'); fi
    timeout 90 "$R/loadgen" --scenario 2 --target "$t" --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" \
      --sub-template '/topic/market/M{i}' "${send[@]}" --source-base "$base" --mode fixed -n 1000 -d 10 \
      --rate "$RATE" --duration 15 --warmup 3 >"$LOG/$t.$round.json" 2>"$LOG/$t.$round.err" &
    loads+=($!)
  done
  wait "${loads[@]}" || { echo "round $round: a load generator failed, see $LOG" >&2; exit 1; }
  line=$(python3 - "$LOG/A.$round.json" "$LOG/B.$round.json" "$LOG/rounds.jsonl" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
with open(sys.argv[3], "a") as f:
    f.write(json.dumps({"a_us": a["server_cpu_us_per_delivery"], "b_us": b["server_cpu_us_per_delivery"],
                        "a_p99_ms": a["p99_ms"], "b_p99_ms": b["p99_ms"]}) + "\n")
for name, r in (("A", a), ("B", b)):
    print(f"  {name}  cpu/delivery {r['server_cpu_us_per_delivery']:6.2f} us  p99 {r['p99_ms']:7.3f} ms"
          f"  p999 {r['p999_ms']:7.3f} ms  lost {r['lost']}", file=sys.stderr)
print(f"{b['server_cpu_us_per_delivery'] / a['server_cpu_us_per_delivery']:.4f}")
EOF
)
  echo "round $round: B/A = $line"
  ratios+=("$line")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')
echo "median B/A of CPU per delivery over $ROUNDS rounds: $median"
if [ -n "$JSON" ]; then
  python3 - "$LOG/rounds.jsonl" "$1" "$2" "$RATE" "$median" >>"$JSON" <<'EOF'
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
a, b, rate, median = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
print(json.dumps({"kind": "pair", "a": a, "b": b, "rate": rate, "rounds": rounds, "median_b_over_a": median}))
EOF
fi

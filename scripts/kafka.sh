#!/usr/bin/env bash
# Test Kafka for stompgate: Apache Kafka in KRaft mode, run from its Maven Central jars on the
# machine's Java (17+). No Docker needed.
#
#   scripts/kafka.sh fetch                              copy the jars into the cache (once)
#   scripts/kafka.sh start [--brokers 1|3] [--dir DIR] [--fresh]
#                                                       start a cluster (new, or the one in DIR),
#                                                       create topics, print `export KAFKA_BOOTSTRAP=...`
#   scripts/kafka.sh stop [--dir DIR] [--clean]         stop every broker (--clean: delete DIR)
#   scripts/kafka.sh stop-broker N [--dir DIR]          stop one broker (failure tests)
#   scripts/kafka.sh start-broker N [--dir DIR]         start it again, wait until it is up
#   scripts/kafka.sh status [--dir DIR]                 which brokers run; exit 1 if none
#   scripts/kafka.sh bootstrap [--dir DIR]              print the bootstrap servers
#   scripts/kafka.sh topics [--dir DIR]                 describe the topics
#   scripts/kafka.sh produce TOPIC KEY VALUE [k=v ...]  produce one record (acks=all), headers k=v
#   scripts/kafka.sh consume TOPIC [--max N] [--timeout-ms MS]
#                                                       print records from the beginning:
#                                                       headers<TAB>key<TAB>value per line
#
# Environment:
#   KAFKA_VERSION        Kafka release to use (default 4.3.1; 4.x command-line tools assumed)
#   STOMPGATE_CACHE      cache root (default $HOME/.cache/stompgate); jars in kafka-<ver>/libs
#   KAFKA_LIBS           use this jar folder instead of the cache
#   KAFKA_DIR            cluster folder when --dir is not given (default <repo>/.cache/kafka)
#   KAFKA_TOPICS         topics created by start (default "trades chat")
#   KAFKA_PARTITIONS     partitions per topic (default 3)
#   KAFKA_START_TIMEOUT  seconds to wait for brokers and topics (default 120)
#   KAFKA_HEAP           broker heap (default 512m)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
CACHE_ROOT="${STOMPGATE_CACHE:-$HOME/.cache/stompgate}"
LIBS="${KAFKA_LIBS:-$CACHE_ROOT/kafka-$KAFKA_VERSION/libs}"
DIR="${KAFKA_DIR:-$REPO/.cache/kafka}"
TOPICS="${KAFKA_TOPICS:-trades chat}"
PARTITIONS="${KAFKA_PARTITIONS:-3}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
HEAP="${KAFKA_HEAP:-512m}"
STOP_TIMEOUT=30

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { printf '[kafka.sh] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- jars

libs_ready() { [[ -f "$LIBS/.complete" && -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]; }

cmd_fetch() {
  if libs_ready; then
    log "jars present: $LIBS ($(ls "$LIBS" | wc -l) files)"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  command -v java >/dev/null || die "java not found (apt-get install -y openjdk-17-jre-headless)"
  local tmp="$LIBS.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars into $LIBS (about 55 MB on the first run)"
  local t0=$SECONDS
  # -B: line-based progress output, fine for CI logs; the transfer lines show each jar as it comes.
  if ! mvn -B -f "$HERE/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        2>&1 | grep --line-buffered -E 'Downloaded from|BUILD|ERROR' \
        | sed -u -E 's#^\[INFO\] Downloaded from [^ ]+ .*/([^/ ]+) \((.*)\)$#downloaded \1 (\2)#; s/^/  mvn: /' >&2; then
    :
  fi
  if [[ ! -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    rm -rf "$tmp"
    die "maven did not deliver kafka_2.13-$KAFKA_VERSION.jar (see the mvn lines above)"
  fi
  touch "$tmp/.complete"
  rm -rf "$LIBS"; mkdir -p "$(dirname "$LIBS")"; mv "$tmp" "$LIBS"
  log "fetched $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0)) s"
}

need_libs() { libs_ready || cmd_fetch; }

# Run a Kafka command-line class quietly (warnings only), bounded in time.
kjava() {
  local secs="$1"; shift
  timeout --kill-after=5 "$secs" java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.logFile=System.err \
    -cp "$LIBS/*" "$@"
}

# ---------------------------------------------------------------- cluster files

# DIR/cluster.env holds: BROKERS, CLUSTER_ID, PORT_<n>, CPORT_<n>, BOOTSTRAP, VOTERS
load_cluster() {
  [[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR (run: scripts/kafka.sh start --dir $DIR)"
  # shellcheck disable=SC1091
  source "$DIR/cluster.env"
}

pid_of() { # prints the pid of broker N if it runs
  local f="$DIR/broker-$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

free_ports() { # free_ports N -> N distinct free loopback TCP ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

new_cluster_id() {
  # An id starting with '-' would read as an option to kafka-storage: draw again (as Kafka does).
  python3 -c 'import base64,uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        print(i); break'
}

write_config() { # write_config N
  local n="$1" rf="$BROKERS" minisr=1 port cport
  port="PORT_$n"; cport="CPORT_$n"
  (( BROKERS >= 3 )) && minisr=2
  mkdir -p "$DIR/broker-$n/data"
  cat > "$DIR/broker-$n/server.properties" <<EOF
# generated by scripts/kafka.sh
node.id=$n
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:${!port},CONTROLLER://127.0.0.1:${!cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${!port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=$VOTERS
log.dirs=$DIR/broker-$n/data
num.partitions=$PARTITIONS
default.replication.factor=$rf
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$minisr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$minisr
group.initial.rebalance.delay.ms=0
min.insync.replicas=1
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=16777216
EOF
}

launch() { # launch N: start broker N in the background, log to DIR/broker-N.log
  local n="$1"
  if pid_of "$n" >/dev/null; then log "broker $n already runs"; return 0; fi
  local logf="$DIR/broker-$n.log"
  echo "=== start $(date -u +%FT%TZ)" >> "$logf"
  wc -c < "$logf" > "$DIR/broker-$n.logoffset"
  setsid nohup java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSS" \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn \
    -Dorg.slf4j.simpleLogger.logFile=System.out \
    -cp "$LIBS/*" kafka.Kafka "$DIR/broker-$n/server.properties" \
    >> "$logf" 2>&1 < /dev/null &
  echo $! > "$DIR/broker-$n.pid"
}

wait_started() { # wait_started N DEADLINE(epoch s)
  local n="$1" deadline="$2" logf="$DIR/broker-$n.log" off
  off="$(cat "$DIR/broker-$n.logoffset" 2>/dev/null || echo 0)"
  while :; do
    if tail -c +"$((off + 1))" "$logf" 2>/dev/null | grep -q 'Kafka Server started'; then
      return 0
    fi
    if ! pid_of "$n" >/dev/null; then
      tail -n 30 "$logf" >&2 || true
      die "broker $n exited during start (log: $logf)"
    fi
    if (( $(date +%s) >= deadline )); then
      tail -n 30 "$logf" >&2 || true
      die "broker $n not started within ${START_TIMEOUT}s (log: $logf)"
    fi
    sleep 0.3
  done
}

create_topics() {
  local t deadline=$(( $(date +%s) + START_TIMEOUT ))
  for t in $TOPICS; do
    while :; do
      if kjava 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
           --if-not-exists --topic "$t" --partitions "$PARTITIONS" \
           --replication-factor "$BROKERS" > "$DIR/topic-$t.out" 2>&1; then
        break
      fi
      if (( $(date +%s) >= deadline )); then
        cat "$DIR/topic-$t.out" >&2
        die "could not create topic $t within ${START_TIMEOUT}s"
      fi
      log "topic $t not created yet, retrying"; sleep 1
    done
  done
  log "topics ready: $TOPICS (partitions $PARTITIONS, replication factor $BROKERS)"
}

# ---------------------------------------------------------------- commands

parse_common() { # sets BROKERS_ARG, FRESH, CLEAN, MAX, TIMEOUT_MS, ARGS[]
  BROKERS_ARG=""; FRESH=0; CLEAN=0; MAX=""; TIMEOUT_MS=""; ARGS=()
  while (( $# )); do
    case "$1" in
      --brokers) BROKERS_ARG="${2:?--brokers needs 1 or 3}"; shift 2 ;;
      --brokers=*) BROKERS_ARG="${1#*=}"; shift ;;
      --dir) DIR="${2:?--dir needs a path}"; shift 2 ;;
      --dir=*) DIR="${1#*=}"; shift ;;
      --fresh) FRESH=1; shift ;;
      --clean) CLEAN=1; shift ;;
      --max) MAX="$2"; shift 2 ;;
      --timeout-ms) TIMEOUT_MS="$2"; shift 2 ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  mkdir -p "$(dirname "$DIR")"
  DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"
}

cmd_start() {
  need_libs
  local t0=$SECONDS n
  if [[ -f "$DIR/cluster.env" && $FRESH == 1 ]]; then
    cmd_stop_all
    rm -rf "$DIR"
  fi
  if [[ -f "$DIR/cluster.env" ]]; then
    load_cluster
    if [[ -n "$BROKERS_ARG" && "$BROKERS_ARG" != "$BROKERS" ]]; then
      die "$DIR holds a $BROKERS-broker cluster; use --fresh to replace it"
    fi
    log "starting the existing $BROKERS-broker cluster in $DIR"
  else
    BROKERS="${BROKERS_ARG:-1}"
    [[ "$BROKERS" =~ ^[1-9]$ ]] || die "--brokers must be 1..9 (1 or 3 make sense)"
    mkdir -p "$DIR"
    local ports; read -r -a ports <<< "$(free_ports $((BROKERS * 2)))"
    CLUSTER_ID="$(new_cluster_id)"
    VOTERS=""; BOOTSTRAP=""
    {
      echo "BROKERS=$BROKERS"; echo "CLUSTER_ID=$CLUSTER_ID"
      for ((n = 1; n <= BROKERS; n++)); do
        echo "PORT_$n=${ports[$(( (n-1)*2 ))]}"; echo "CPORT_$n=${ports[$(( (n-1)*2+1 ))]}"
      done
    } > "$DIR/cluster.env.tmp"
    # shellcheck disable=SC1091
    source "$DIR/cluster.env.tmp"
    for ((n = 1; n <= BROKERS; n++)); do
      local p="PORT_$n" c="CPORT_$n"
      VOTERS+="${VOTERS:+,}$n@127.0.0.1:${!c}"
      BOOTSTRAP+="${BOOTSTRAP:+,}127.0.0.1:${!p}"
    done
    { echo "VOTERS=$VOTERS"; echo "BOOTSTRAP=$BOOTSTRAP"; } >> "$DIR/cluster.env.tmp"
    for ((n = 1; n <= BROKERS; n++)); do
      write_config "$n"
      kjava 60 kafka.tools.StorageTool format -t "$CLUSTER_ID" \
        -c "$DIR/broker-$n/server.properties" > "$DIR/broker-$n/format.out" 2>&1 \
        || { cat "$DIR/broker-$n/format.out" >&2; die "storage format of broker $n failed"; }
    done
    mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
    log "new $BROKERS-broker cluster $CLUSTER_ID in $DIR"
  fi
  for ((n = 1; n <= BROKERS; n++)); do launch "$n"; done
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  for ((n = 1; n <= BROKERS; n++)); do wait_started "$n" "$deadline"; done
  log "brokers up in $((SECONDS - t0)) s: $BOOTSTRAP"
  create_topics
  echo "$BOOTSTRAP" > "$DIR/bootstrap"
  log "ready in $((SECONDS - t0)) s; logs in $DIR"
  echo "export KAFKA_BOOTSTRAP=$BOOTSTRAP"
}

stop_pids() { # stop_pids PID...: TERM all, wait up to STOP_TIMEOUT, then KILL
  local pids=("$@") deadline=$(( $(date +%s) + STOP_TIMEOUT )) p alive
  (( ${#pids[@]} )) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while :; do
    alive=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    (( ${#alive[@]} )) || return 0
    if (( $(date +%s) >= deadline )); then
      log "killing ${alive[*]} (no exit within ${STOP_TIMEOUT}s)"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.5
      return 0
    fi
    sleep 0.2
  done
}

cmd_stop_all() {
  [[ -f "$DIR/cluster.env" ]] || { log "no cluster in $DIR"; return 0; }
  load_cluster
  local n pid pids=()
  for ((n = 1; n <= BROKERS; n++)); do
    if pid="$(pid_of "$n")"; then pids+=("$pid"); fi
  done
  stop_pids "${pids[@]}"
  rm -f "$DIR"/broker-*.pid
  log "stopped ${#pids[@]} broker(s) in $DIR"
}

cmd_stop() {
  cmd_stop_all
  if (( CLEAN )); then rm -rf "$DIR"; log "removed $DIR"; fi
}

broker_arg() {
  local n="${ARGS[0]:-}"
  [[ "$n" =~ ^[0-9]+$ ]] || die "broker number expected"
  load_cluster
  (( n >= 1 && n <= BROKERS )) || die "broker $n does not exist (cluster has $BROKERS)"
  echo "$n"
}

cmd_stop_broker() {
  local n pid; n="$(broker_arg)"; load_cluster
  if pid="$(pid_of "$n")"; then stop_pids "$pid"; rm -f "$DIR/broker-$n.pid"; log "broker $n stopped"
  else log "broker $n was not running"; fi
}

cmd_start_broker() {
  local n t0=$SECONDS; n="$(broker_arg)"; load_cluster; need_libs
  launch "$n"
  wait_started "$n" $(( $(date +%s) + START_TIMEOUT ))
  log "broker $n up in $((SECONDS - t0)) s"
}

cmd_status() {
  load_cluster
  local n pid up=0 p
  for ((n = 1; n <= BROKERS; n++)); do
    p="PORT_$n"
    if pid="$(pid_of "$n")"; then echo "broker $n: running (pid $pid, 127.0.0.1:${!p})"; up=$((up + 1))
    else echo "broker $n: stopped (127.0.0.1:${!p})"; fi
  done
  echo "bootstrap: $BOOTSTRAP"
  (( up > 0 ))
}

cmd_produce() {
  need_libs; load_cluster
  (( ${#ARGS[@]} >= 3 )) || die "usage: produce TOPIC KEY VALUE [header k=v ...]"
  local topic="${ARGS[0]}" key="${ARGS[1]}" value="${ARGS[2]}" hdrs="" h i
  for ((i = 3; i < ${#ARGS[@]}; i++)); do
    h="${ARGS[$i]}"
    [[ "$h" == header ]] && continue
    [[ "$h" == *=* ]] || die "header must be k=v: $h"
    hdrs+="${hdrs:+,}${h%%=*}:${h#*=}"
  done
  local line="$key"$'\t'"$value" hopt=()
  if [[ -n "$hdrs" ]]; then line="$hdrs"$'\t'"$line"; hopt=(--reader-property parse.headers=true); fi
  printf '%s\n' "$line" |
    kjava 60 org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" --topic "$topic" \
      --command-property acks=all --command-property delivery.timeout.ms=30000 \
      --reader-property parse.key=true "${hopt[@]}" --sync
}

cmd_consume() {
  need_libs; load_cluster
  (( ${#ARGS[@]} >= 1 )) || die "usage: consume TOPIC [--max N] [--timeout-ms MS]"
  local extra=()
  [[ -n "$MAX" ]] && extra+=(--max-messages "$MAX")
  kjava 120 org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
    --topic "${ARGS[0]}" --from-beginning --timeout-ms "${TIMEOUT_MS:-10000}" "${extra[@]}" \
    --formatter-property print.key=true --formatter-property print.headers=true \
    --formatter-property print.partition=false --command-property group.protocol=consumer \
    2> >(grep -v -E 'Processed a total|TimeoutException|Error processing message|^\s+at |^\s*$' >&2) || true
}

cmd_topics() {
  need_libs; load_cluster
  kjava 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --describe
}

main() {
  local cmd="${1:-}"; shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) parse_common "$@"; cmd_start ;;
    stop) parse_common "$@"; cmd_stop ;;
    stop-broker) parse_common "$@"; cmd_stop_broker ;;
    start-broker) parse_common "$@"; cmd_start_broker ;;
    status) parse_common "$@"; cmd_status ;;
    bootstrap) parse_common "$@"; load_cluster; echo "$BOOTSTRAP" ;;
    topics) parse_common "$@"; cmd_topics ;;
    produce) parse_common "$@"; cmd_produce ;;
    consume) parse_common "$@"; cmd_consume ;;
    ""|-h|--help|help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command: $cmd (see scripts/kafka.sh --help)" ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# The deployment test: docker-compose.yml, unmodified, on a container engine started here.
#   1. install the engine, compose v2 and buildx (scripts/install/docker.sh; SKIP_INSTALL=1
#      leaves that out) and start dockerd, unless one already answers
#   2. build the stand-ins for the images the compose file names (no image registry is
#      reachable here; scripts/compose/images.sh; cached: a second run takes seconds)
#   3. docker compose build, then `docker compose up --build --wait` (README's command)
#   4. the checks through nginx on :8080 (tests/compose): dashboard, /readyz, a feed trade,
#      chat across replicas, `stop kafka-2`, `kill gateway-a`, and `down -v` leaves nothing
# Prints the time of every stage. Where no engine can be started (not root, no cgroups, ...)
# it prints "compose: SKIPPED: <why>" and exits 0; scripts/test.sh counts that as skipped.
# Stops the dockerd it started, by its pid. Never run it beside benchmarks: three JVM
# brokers and a release build load a 2-core machine fully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
CACHE="$ROOT/.cache/docker"
mkdir -p "$CACHE"
T_START=$SECONDS
T_STAGE=$SECONDS

stage() {
  echo "[compose] $1: $((SECONDS - T_STAGE)) s"
  T_STAGE=$SECONDS
}
skip() {
  echo "compose: SKIPPED: $*"
  exit 0
}

# ---- 1. engine
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "no container engine answers and starting one needs root"
  command -v apt-get >/dev/null || command -v dockerd >/dev/null \
    || skip "no container engine, and no apt-get to install Debian's docker.io"
fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash scripts/install/docker.sh
fi
docker compose version >/dev/null 2>&1 || { echo "[compose] docker compose v2 is missing" >&2; exit 1; }

DOCKERD_PID=""
cleanup() {
  local rc=$?
  if docker info >/dev/null 2>&1 && [ -n "$(docker compose ps -aq 2>/dev/null)" ]; then
    echo "[compose] cleanup: docker compose down -v"
    docker compose down -v --timeout 10 >/dev/null 2>&1 || true
  fi
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill "$DOCKERD_PID"
    for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -9 "$DOCKERD_PID"
    echo "[compose] dockerd (pid $DOCKERD_PID) stopped"
  fi
  echo "[compose] total: $((SECONDS - T_START)) s"
  exit "$rc"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || skip "dockerd is not installed"
  dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.2
  done
  if ! docker info >/dev/null 2>&1; then
    tail -5 "$CACHE/dockerd.log" | sed 's/^/  dockerd: /'
    DOCKERD_PID=""
    skip "dockerd would not start on this machine (its log: $CACHE/dockerd.log)"
  fi
  echo "[compose] dockerd started (pid $DOCKERD_PID)"
fi
if [ -n "$(docker ps -q)" ]; then
  echo "[compose] containers already run on this engine; the test needs it to itself:" >&2
  docker ps >&2
  exit 1
fi
stage "engine"

# ---- 2. images
bash scripts/compose/images.sh
stage "stand-in images"

# ---- 3. the stack
python3 -c "import stomp, websocket, pytest_timeout" 2>/dev/null \
  || python3 -m pip install -q -r tests/py/requirements.txt
docker compose build --quiet
stage "docker compose build (gateway from source, feed)"
if ! docker compose up --build --wait; then
  docker compose ps -a
  docker compose logs --tail 30
  exit 1
fi
docker compose ps --format 'table {{.Service}}\t{{.Status}}'
stage "docker compose up --build --wait"

# ---- 4. the checks
rc=0
python3 -m pytest tests/compose -q -s -p no:cacheprovider --timeout 120 || rc=$?
if [ "$rc" -ne 0 ]; then
  docker compose ps -a || true
  docker compose logs --tail 20 gateway-a gateway-b nginx feed || true
fi
stage "checks"
exit "$rc"

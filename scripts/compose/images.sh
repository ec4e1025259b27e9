#!/usr/bin/env bash
# Builds local stand-ins for the images docker-compose.yml and the Dockerfiles name, for a
# machine that reaches Debian's packages and Maven Central but no image registry:
#   debian:bookworm-slim   base made by mmdebstrap from this machine's Debian mirror
#   rust:1-bookworm        + bookworm-security's rustc-web/cargo-web and the C toolchain
#   nginx:1.28             + Debian's nginx
#   apache/kafka:4.3.1     + Debian's Java 17 and the Kafka jars (scripts/kafka.sh fetch)
#   python:3.12-slim       + Debian's Python in a venv
# An image of that name that is not one of these stand-ins (a real one pulled from a
# registry) is left alone. A stand-in is rebuilt only when its definition changed, so a
# second run takes seconds. Needs a running engine.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/.cache/docker"
LABEL=org.stompgate.standin
mkdir -p "$CACHE"

log() { echo "[images] $*"; }

# Prints the stand-in label of an image, "none" for an image that is not a stand-in, and
# nothing when there is no such image.
label_of() {
  local v
  v=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null) || return 0
  case "$v" in ""|"<no value>") echo none ;; *) echo "$v" ;; esac
}

# Is $1 present as a real image, or as a stand-in whose definition has hash $2?
current() {
  local have; have=$(label_of "$1")
  [ -n "$have" ] || return 1
  if [ "$have" = none ]; then log "$1: a real image is present, kept"; return 0; fi
  [ "$have" = "$2" ]
}

mirror_of() {  # $1 = "main" or "security": the mirror this machine's apt sources name
  local pat='https?://[^ ]+/debian/?$' all
  all=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
          /etc/apt/sources.list.d/*.list | grep -oE 'https?://[^ ]+' | sed 's#/$##')
  if [ "$1" = security ]; then grep -E -- '/debian-security$' <<<"$all" | head -1
  else grep -E -- '/debian$' <<<"$all" | head -1; fi
}

build_base() {
  local name=debian:bookworm-slim main sec hash cas=()
  main=$(mirror_of main); sec=$(mirror_of security)
  [ -n "$main" ] || { echo "[images] no Debian mirror in this machine's apt sources" >&2; exit 1; }
  shopt -s nullglob
  cas=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
  hash=base-1-$( { echo "$main $sec"; cat "${cas[@]}" 2>/dev/null; } | sha256sum | cut -c1-16)
  current "$name" "$hash" && return 0
  log "$name: mmdebstrap bookworm (minbase) and docker import"
  local sources=("deb $main bookworm main" "deb $main bookworm-updates main")
  [ -n "$sec" ] && sources+=("deb $sec bookworm-security main")
  local hooks=()
  # HTTPS from inside the containers (cargo, pip) needs this machine's CA certificates.
  if [ "${#cas[@]}" -gt 0 ]; then
    hooks+=(--customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"'
            --customize-hook="copy-in ${cas[*]} /usr/local/share/ca-certificates/"
            --customize-hook='chroot "$1" update-ca-certificates')
  fi
  rm -f "$CACHE/rootfs.tar"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,curl,zlib1g "${hooks[@]}" \
    bookworm "$CACHE/rootfs.tar" "${sources[@]}"
  docker import -c "LABEL $LABEL=$hash" -c 'CMD ["bash"]' "$CACHE/rootfs.tar" "$name" >/dev/null
  rm -f "$CACHE/rootfs.tar"
}

# Builds stand-in $1 from context $2 (a directory under images/, copied with extra files).
build_standin() {
  local name="$1" dir="$2" hash ctx
  hash=$(cd "$dir" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-16)
  hash="$hash-$(label_of debian:bookworm-slim)"
  if [ "$name" = apache/kafka:4.3.1 ]; then
    hash="$hash-$(ls "$KAFKA_LIBS" | sha256sum | cut -c1-8)"
  fi
  current "$name" "$hash" && return 0
  log "$name: docker build"
  ctx="$dir"
  if [ "$name" = apache/kafka:4.3.1 ]; then
    ctx=$(mktemp -d "$CACHE/kafka-ctx.XXXXXX")
    cp -a "$dir/." "$ctx/"
    mkdir -p "$ctx/libs"
    cp "$KAFKA_LIBS"/*.jar "$ctx/libs/"
  fi
  docker build --quiet --label "$LABEL=$hash" -t "$name" "$ctx" >/dev/null
  [ "$ctx" = "$dir" ] || rm -rf "$ctx"
}

build_base
pids=()
for pair in rust:1-bookworm:rust nginx:1.28:nginx python:3.12-slim:python; do
  build_standin "${pair%:*}" "$HERE/images/${pair##*:}" &
  pids+=($!)
done
if [ "$(label_of apache/kafka:4.3.1)" != none ]; then
  bash "$ROOT/scripts/kafka.sh" fetch >/dev/null
  KAFKA_LIBS="${KAFKA_LIBS:-${STOMPGATE_CACHE:-$HOME/.cache/stompgate}/kafka-4.3.1/libs}"
  build_standin apache/kafka:4.3.1 "$HERE/images/kafka"
fi
for pid in "${pids[@]}"; do wait "$pid"; done

#!/usr/bin/env bash
# Installs a container engine and compose v2 on a Debian bookworm machine, for the compose
# test (scripts/compose-test.sh). Idempotent and quick when all is there; no prompts.
#   - Debian's docker.io (the engine) with its package scripts kept from starting it:
#     the compose test starts dockerd itself and stops it by its pid.
#   - compose v2 and buildx (the Dockerfile uses `RUN --mount`, which needs BuildKit):
#     Debian unstable's docker-compose and docker-buildx packages run on bookworm. They are
#     fetched with a private apt list (own state, cache and sources, so this machine's apt
#     sources stay untouched) and unpacked into $DOCKER_CONFIG/cli-plugins.
#   - mmdebstrap, which makes the base image of the local stand-in images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
export DEBIAN_FRONTEND=noninteractive
PLUGINS="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
APT=(apt-get -o DPkg::Lock::Timeout=600 -qq)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
for p in docker.io mmdebstrap iptables; do installed "$p" || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  echo "[install] apt-get install ${need[*]} (engine not started by the package)"
  # policy-rc.d exiting 101 tells the package scripts not to start any service.
  had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  if [ "$had_policy" = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${APT[@]}" update </dev/null
  "${APT[@]}" install -y --no-install-recommends "${need[@]}" </dev/null
  if [ "$had_policy" = 0 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

# The Debian mirror this machine already uses (never a host written into the project).
debian_mirror() {
  local m
  m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -oE 'https?://[^ ]+/debian/?' | grep -v -- '-security' | head -1)
  echo "${m%/}"
}

if [ ! -x "$PLUGINS/docker-compose" ] || [ ! -x "$PLUGINS/docker-buildx" ]; then
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || { echo "[install] no Debian mirror in this machine's apt sources" >&2; exit 1; }
  apt_dir="$ROOT/.cache/docker/apt"
  mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$PLUGINS"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror unstable main" \
    >"$apt_dir/sources.list"
  private=(-o "Dir::State=$apt_dir/state" -o "Dir::Cache=$apt_dir/cache"
           -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
           -o "Dir::State::status=/var/lib/dpkg/status" -o APT::Sandbox::User=root)
  echo "[install] compose v2 and buildx from Debian unstable (private apt list)"
  "${APT[@]}" "${private[@]}" update </dev/null
  (cd "$apt_dir/debs" && rm -f ./*.deb && "${APT[@]}" "${private[@]}" download docker-compose docker-buildx </dev/null)
  unpacked="$apt_dir/unpacked"
  rm -rf "$unpacked"
  for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$unpacked"; done
  for tool in docker-compose docker-buildx; do
    src=$(find "$unpacked" -path "*cli-plugins/$tool" -type f | head -1)
    [ -n "$src" ] || { echo "[install] $tool not found in its package" >&2; exit 1; }
    install -m 0755 "$src" "$PLUGINS/$tool"
  done
fi
docker compose version
echo "[install] docker: done"

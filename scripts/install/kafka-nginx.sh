#!/usr/bin/env bash
# Installs what the Kafka, nginx and deployment tests need (idempotent, no prompts; fine
# with CI=true and no stdin):
#   - Debian: Java 17 and Maven (Kafka runs from its jars), nginx, docker-compose (only to
#     parse docker-compose.yml; no engine is used)
#   - Python test clients from tests/py/requirements.txt
#   - the Kafka jars, through scripts/kafka.sh fetch (cached)
# Set SKIP_APT=1 to leave the system packages alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DEBIAN_FRONTEND=noninteractive

need_pkgs=()
command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
{ command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; } || need_pkgs+=(nginx-light)
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)

if [[ "${SKIP_APT:-0}" != 1 && ${#need_pkgs[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
  echo "[install kafka-nginx] apt-get install ${need_pkgs[*]}"
  $SUDO apt-get update -qq < /dev/null
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" < /dev/null
  # The Debian package may start a system nginx on :80; the tests run their own nginx, so
  # leave no stray daemon behind.
  if [[ " ${need_pkgs[*]} " == *" nginx-light "* ]] && [[ -f /run/nginx.pid ]]; then
    $SUDO nginx -s stop 2>/dev/null || true
  fi
else
  echo "[install kafka-nginx] system packages present"
fi

PY="${PYTHON:-python3}"
if ! "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as md, pathlib, re, sys
for line in pathlib.Path("tests/py/requirements.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, ver = re.split(r"==", line)
    if md.version(name) != ver:
        sys.exit(1)
PY
then
  echo "[install kafka-nginx] pip install -r tests/py/requirements.txt"
  "$PY" -m pip install -q --disable-pip-version-check -r tests/py/requirements.txt < /dev/null
else
  echo "[install kafka-nginx] python test clients present"
fi

bash scripts/kafka.sh fetch < /dev/null
echo "[install kafka-nginx] done"

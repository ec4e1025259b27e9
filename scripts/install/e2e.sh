#!/usr/bin/env bash
# Installs what the browser end-to-end test (node --test e2e/) needs on a fresh Debian machine:
# Debian's Chromium and fonts, and the pinned npm packages of e2e/ (playwright-core, which uses
# /usr/bin/chromium and downloads no browser) and web/ (the vendored dashboard libraries).
# Idempotent; runs unattended (CI=true, no stdin).
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -E"; fi

need_pkgs=()
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
for p in fonts-dejavu-core fonts-liberation fonts-noto-color-emoji; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "e2e install: apt-get install ${need_pkgs[*]}"
  # wait for any other apt/dpkg run on this machine instead of failing on its lock
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need_pkgs[@]}" </dev/null
fi

/usr/bin/chromium --version 2>/dev/null || { echo "e2e install: /usr/bin/chromium missing" >&2; exit 1; }

for dir in e2e web; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
echo "e2e install: done"

#!/usr/bin/env bash
# Installs what the observability tests need (idempotent, no prompts; fine with CI=true and
# no stdin): Debian's `prometheus` package (prometheus and promtool, to check and load
# deploy/prometheus/) and `prometheus-blackbox-exporter` (to probe /readyz as the shipped
# Prometheus configuration does). Grafana is not packaged by Debian; its dashboard JSON is
# checked structurally and its queries run against the real Prometheus instead.
# The packages' services are not started here (the tests run their own processes on
# loopback); if the package scripts start them, they are stopped again.
# Set SKIP_APT=1 to leave the system packages alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DEBIAN_FRONTEND=noninteractive

need_pkgs=()
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } \
  || need_pkgs+=(prometheus)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need_pkgs+=(prometheus-blackbox-exporter)

if [[ "${SKIP_APT:-0}" != 1 && ${#need_pkgs[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
  echo "[install observability] apt-get install ${need_pkgs[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq < /dev/null
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" < /dev/null
  for svc in prometheus prometheus-blackbox-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      $SUDO systemctl stop "$svc" || true
    fi
  done
else
  echo "[install observability] prometheus, promtool and the blackbox exporter present"
fi
echo "[install observability] done"

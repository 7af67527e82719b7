#!/usr/bin/env bash
# Installs a Prometheus server binary for the `triton` test tier (tests/triton/test_metric_sources.py runs a real
# Prometheus scraping a real Triton, through triton_operator.testing.PrometheusServer), from Debian's `prometheus`
# package (no release downloads here). Idempotent: when `prometheus` is already on PATH nothing is installed.
# Prints the version on its last line. Needs root (or sudo without a password) to install.
#
#   hack/install-prometheus.sh
#
# The tests start their own Prometheus on a free loopback port with a throw-away config and storage, so the
# package's own service (port 9090, /var/lib/prometheus) must not run: Docker images block it with policy-rc.d,
# but on a host with systemd or sysvinit the package's postinst starts it. Right after installing, this script
# stops that service and disables it at boot; a Prometheus that was already installed is left as it was.
set -euo pipefail

log() { printf '[install-prometheus] %s\n' "$*" >&2; }

SUDO=()
as_root() { "${SUDO[@]}" "$@"; }

stop_packaged_service() {  # the service the package's postinst may have started
  if [ -d /run/systemd/system ]; then
    log "systemd: disabling and stopping prometheus.service"
    as_root systemctl disable --now --quiet prometheus.service >&2
    return
  fi
  local pidfile=/run/prometheus/prometheus.pid
  if [ -f "$pidfile" ] && as_root kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "stopping the prometheus service the package started (pid $(cat "$pidfile"))"
    as_root /etc/init.d/prometheus stop >&2
  fi
  as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
}

if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      log "need root to install Debian's prometheus package"
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  as_root apt-get update -qq >&2
  log "apt-get install prometheus"
  # --no-install-recommends: the recommended prometheus-node-exporter would be one more daemon started.
  as_root apt-get install -y -qq --no-install-recommends prometheus >&2
  stop_packaged_service
fi

# `prometheus --version` prints "prometheus, version 2.42.0+ds (branch: ...)" then build details.
prometheus --version 2>&1 | head -1

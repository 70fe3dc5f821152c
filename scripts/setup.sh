#!/usr/bin/env bash
# Sets up MTA on a fresh Debian/Ubuntu machine: Python venv, the project, Chromium, redis-server.
# Safe to run again: every step checks before it acts. Runs as root without prompts; as another
# user it installs nothing system-wide and prints the exact command to run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MTA_VENV:-.venv}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_install() {
  if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null; then
    log "missing system packages: $*"
    log "please run:  sudo apt-get update && sudo apt-get install -y $*   (then run this script again)"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  log "installing $* (apt)"
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Python 3.11+ with venv
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then PY=$cand; break; fi
  done
fi
if [ -z "$PY" ]; then apt_install python3 python3-venv python3-pip; PY=python3; fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi

# 2. redis-server (tests start their own; `mta up` starts one when MTA_REDIS_URL is empty)
command -v redis-server >/dev/null || apt_install redis-server

# 3. The virtual environment and the project (re-installed only when pyproject.toml changes)
if [ ! -x "$VENV/bin/python" ]; then log "creating $VENV with $PY"; "$PY" -m venv "$VENV"; fi
STAMP="$VENV/.mta-installed"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "installing MTA and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  echo "$WANT" > "$STAMP"
fi

# 4. Chromium: Playwright's own build when it can be downloaded, else the distribution's.
if ! "$VENV/bin/python" -c 'from shared.chromium import find_chromium; find_chromium()' 2>/dev/null; then
  log "no Chromium yet: trying Playwright's own build"
  if ! timeout 180 "$VENV/bin/playwright" install chromium >/dev/null 2>&1; then
    log "Playwright's download is not reachable; using the distribution's chromium"
    apt_install chromium fonts-dejavu-core || true
  fi
  "$VENV/bin/python" -c 'from shared.chromium import find_chromium; print("[setup] chromium:", find_chromium() or "playwright")'
fi
# 5. Optional: a virtual display for headed Chromium on a server (the test command asks for it)
if [ "${MTA_SETUP_XVFB:-0}" = 1 ] && ! command -v Xvfb >/dev/null; then
  apt_install xvfb xauth || log "no Xvfb: the headed-browser test will be skipped"
fi
# 6. Optional: promtool (Debian's prometheus package) to check the alert rules in deploy/prometheus
if [ "${MTA_SETUP_PROMTOOL:-0}" = 1 ] && ! command -v promtool >/dev/null; then
  apt_install prometheus || log "no promtool: the Prometheus rule tests will be skipped"
fi
# 7. Optional: wrk, the load generator of the status-API benchmark (scripts/bench.sh asks for it)
if [ "${MTA_SETUP_WRK:-0}" = 1 ] && ! command -v wrk >/dev/null; then
  apt_install wrk || log "no wrk: bench b40 needs it (or BENCH_API_GENERATOR=python)"
fi
log "ready: $VENV/bin/mta"

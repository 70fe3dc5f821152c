#!/usr/bin/env bash
# Records a walk of the Munich adapter through each of the replica's scenarios into
# tests/recordings/<name>.zip (HAR + compressed bodies; `mta record`), which tests/ops/test_replay.py
# replays without network. Run it again after a deliberate change of the replica's pages or API (or
# of what a recording should show), review what changed, and commit the files.
#
#   ./scripts/record-scenarios.sh            # all recordings
#   ./scripts/record-scenarios.sh maintenance-503 quiet-day   # only these
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MTA_VENV:-.venv}
PY="$VENV/bin/python"
OUT=${MTA_RECORDINGS_DIR:-tests/recordings}
WORK=$(mktemp -d)
trap 'stop_replica; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

log() { printf '\033[1m[record]\033[0m %s\n' "$*" >&2; }

# A cheap captcha keeps replays fast; no pacing (the replica is ours); no trace zips in the repo.
export MTA_REPLICA_CAPTCHA_COST=50 MTA_PACER=none MTA_DATA_DIR="$WORK/data" MTA_LOG_LEVEL=WARNING

REPLICA_PID=""
stop_replica() {
  if [[ -n "$REPLICA_PID" ]] && kill -0 "$REPLICA_PID" 2>/dev/null; then
    kill "$REPLICA_PID" && wait "$REPLICA_PID" 2>/dev/null || true
  fi
  REPLICA_PID=""
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# control METHOD PATH [JSON]: call the replica's /_replica control API
control() {
  "$PY" - "$PORT" "$1" "$2" "${3:-}" <<'EOF'
import json, sys, httpx
port, method, path, body = sys.argv[1:5]
r = httpx.request(method, f"http://127.0.0.1:{port}/_replica{path}", json=json.loads(body) if body else None, timeout=30)
r.raise_for_status()
EOF
}

# record NAME SCENARIO TARGET ADVANCE [EXTRA_ENV]: start the replica on SCENARIO, move its clock
# ADVANCE (e.g. 70s; 0 = no move), walk TARGET (SERVICE:OFFICE[,OFFICE]) and keep the HAR.
record() {
  local name=$1 scenario=$2 target=$3 advance=$4 extra=${5:-}
  if [[ ${#SELECTED[@]} -gt 0 && ! " ${SELECTED[*]} " =~ " $name " ]]; then return; fi
  PORT=$(free_port)
  log "$name: scenario $scenario, target $target, clock +$advance"
  env $extra "$VENV/bin/mta" replica --port "$PORT" --scenario "$scenario" --control >"$WORK/replica-$name.log" 2>&1 &
  REPLICA_PID=$!
  "$PY" -c "
import sys, time, httpx
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        httpx.get('http://127.0.0.1:$PORT/_replica/clock', timeout=2).raise_for_status(); sys.exit(0)
    except httpx.HTTPError:
        time.sleep(0.2)
sys.exit('the replica did not start: see $WORK/replica-$name.log')"
  if [[ "$advance" != "0" ]]; then control POST "/advance?seconds=$advance"; fi
  "$VENV/bin/mta" record --target "$target" --out "$OUT/$name.zip" \
    --site-url "http://127.0.0.1:$PORT/buergerservice/terminvereinbarung.html" \
    --no-trace --label "replica scenario $scenario, clock +$advance"
  stop_replica
}

SELECTED=("$@")
# name               scenario        target (service:offices)  clock   extra environment
record quiet-day      quiet-day      1063475:102522            0
record two-offices    quiet-day      1063475:102522,54261      0
record no-slots       quiet-day      1063441:102523            0
record contested-slot contested-slot 1063475:102522            15s
record maintenance-503 maintenance   1063475:102522            70s
record rate-limited   maintenance    1063475:102522            310s
record layout-changed layout-change  1063475:102522            130s
record legacy-api     quiet-day      1063475:102522            0       MTA_REPLICA_LEGACY_API=true
log "done: $(ls "$OUT" | wc -l) files in $OUT ($(du -sh "$OUT" | cut -f1))"

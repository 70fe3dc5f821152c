#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs MTA on this machine against the local replica of the
# city's site: `mta up --replica demo`. Extra arguments go to `mta up`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec "${MTA_VENV:-.venv}/bin/mta" up --replica "${MTA_DEMO_SCENARIO:-demo}" "$@"

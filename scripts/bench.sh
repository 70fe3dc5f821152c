#!/usr/bin/env bash
# Sets up (scripts/setup.sh, with wrk, the status-API benchmark's load generator), then runs the
# benchmarks in bench/ and prints their tables (saved to bench/RESULTS.md; pass --readme to copy
# them into README.md). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
MTA_SETUP_WRK=1 ./scripts/setup.sh
exec "${MTA_VENV:-.venv}/bin/python" -m bench "$@"

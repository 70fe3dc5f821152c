#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every check: ruff, mypy, the compose file, the Dockerfiles
# (hadolint), and all tests.
# PostgreSQL tests use MTA_TEST_POSTGRES_URL (default: local server on 127.0.0.1:5432); when none
# answers, this script starts one if it can (root on Debian), else those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
MTA_SETUP_XVFB=1 MTA_SETUP_PROMTOOL=1 ./scripts/setup.sh
VENV=${MTA_VENV:-.venv}
log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

export MTA_TEST_POSTGRES_URL=${MTA_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
./scripts/ensure-postgres.sh || log "PostgreSQL unavailable: the PostgreSQL tests will be skipped (see above)"

log "ruff"; "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check .
log "mypy"; "$VENV/bin/mypy"
log "docker compose config"
"$VENV/bin/docker-compose" -f docker-compose.yml config --quiet
"$VENV/bin/docker-compose" -f docker-compose.yml --profile demo --profile postgres config --quiet
log "hadolint"; "$VENV/bin/hadolint" --config deploy/hadolint.yaml Dockerfile.worker Dockerfile.bot
log "pytest"
exec "$VENV/bin/pytest" -q -p no:cacheprovider "$@"

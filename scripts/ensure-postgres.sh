#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at MTA_TEST_POSTGRES_URL's host:port for the tests.
# Starts the local cluster, or installs Debian's postgresql when running as root; exits 1 when
# neither is possible so that the caller can say the PostgreSQL tests will be skipped.
set -uo pipefail
HOST=127.0.0.1; PORT=5432
ready() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
ready && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[postgres] nothing listens on $HOST:$PORT; run: sudo apt-get install -y postgresql" >&2; exit 1
fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "[postgres] installing postgresql (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || exit 1
fi
VERSION=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
[ -n "$VERSION" ] || { echo "[postgres] no cluster found" >&2; exit 1; }
# trust local TCP connections for the test user, as on the development machines
HBA=/etc/postgresql/$VERSION/main/pg_hba.conf
grep -q "mta-tests" "$HBA" || sed -i '1i host all all 127.0.0.1/32 trust # mta-tests' "$HBA"
pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect "$VERSION" main reload
for _ in $(seq 1 50); do ready && exit 0; sleep 0.2; done
echo "[postgres] the server did not come up" >&2; exit 1

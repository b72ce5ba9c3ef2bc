#!/usr/bin/env bash
# A development PostgreSQL for sqlx's compile-time query checks.
#
#   bash tests/dev-db.sh          start it (if needed) and load the schema into a fresh database
#   bash tests/dev-db.sh url      print its DATABASE_URL
#   bash tests/dev-db.sh stop     stop it
#
# It lives under the cache directory, listens on loopback only, and is never used by tests
# (they start their own server). `tests/sqlx-prepare.sh` uses it to refresh app/.sqlx.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# Under the temporary directory: the postgres account (used when we are root) must reach it.
data="${TMPDIR:-/tmp}/shopctl-dev-db-$EUID"
port="${SHOP_DEV_DB_PORT:-55432}"
db=${SHOP_DEV_DB_NAME:-shop_dev}
url="postgres://postgres@127.0.0.1:$port/$db"

bindir() {
    if command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
    local best
    best="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [[ -n "$best" ]] || { echo "PostgreSQL server binaries not found; run: bash tests/tools.sh" >&2; exit 1; }
    echo "$best"
}

# PostgreSQL refuses to run as root; use its own account then.
as_pg() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin; bin="$(bindir)"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        mkdir -p "$data"
        [[ $EUID -eq 0 ]] && chown postgres: "$data"
        as_pg "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$data" -l "$data/log" -w -o "-h 127.0.0.1 -p $port -k '' -c fsync=off" start >/dev/null
    fi
}

load_schema() {
    psql -q -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    for f in "$root"/app/migrations/*.sql; do
        psql -q -X -h 127.0.0.1 -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 -f "$f"
    done
}

case "${1:-up}" in
    up) start; load_schema; echo "$url" ;;
    url) echo "$url" ;;
    stop) as_pg "$(bindir)/pg_ctl" -D "$data" -m fast stop ;;
    *) echo "usage: $0 [up|url|stop]" >&2; exit 2 ;;
esac

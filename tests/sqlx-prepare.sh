#!/usr/bin/env bash
# Refreshes app/.sqlx, the query data that lets the app's compile-time checked SQL build
# without a database (CI and fresh clones build with SQLX_OFFLINE=true).
#
# Run after changing a query or a migration. It loads app/migrations into the development
# database (tests/dev-db.sh), re-checks every query against it, and records the results.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}

url=$(bash tests/dev-db.sh up | tail -n1)
rm -rf app/.sqlx
mkdir -p app/.sqlx
# The macros re-run only when the crate recompiles.
touch app/src/lib.rs app/src/main.rs
DATABASE_URL=$url SQLX_OFFLINE=false SQLX_OFFLINE_DIR=$root/app/.sqlx cargo check -p app --lib --bins --locked --quiet
touch app/src/lib.rs
env -u DATABASE_URL SQLX_OFFLINE=true cargo check -p app --lib --bins --locked --quiet
echo "app/.sqlx: $(ls app/.sqlx | wc -l) queries recorded"

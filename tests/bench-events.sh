#!/usr/bin/env bash
# Benchmark of the order events: from an order change's commit until all four consumers
# (inventory, notifications, fulfilment, analytics) have applied its event, while shoppers
# place and pay orders through the API at a fixed rate.
#
#   bash tests/bench-events.sh [RATE] [SECONDS]     (defaults: 200 orders/s for 20 s)
#
# Starts its own PostgreSQL, tansu broker, `app serve` and `app worker` (release builds) on
# loopback ports, runs app/examples/order_events_load.rs, prints its figures and stops all.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rate=${1:-200}
seconds=${2:-20}

bash tests/tools.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
export PATH=${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/tools/bin:$PATH
SQLX_OFFLINE=true cargo build --release -p app --locked --quiet --bin app --example order_events_load
app_bin=$CARGO_TARGET_DIR/release/app
load_bin=$CARGO_TARGET_DIR/release/examples/order_events_load

work=$(mktemp -d "${TMPDIR:-/tmp}/shop-bench-events.XXXXXX")
chmod 755 "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(port); app_port=$(port); kafka_port=$(port); metrics_port=$(port)
bindir=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pids=()
cleanup() {
  # The app and worker first, the broker they talk to last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; wait "${pids[i]}" 2>/dev/null; done
  as_pg "$bindir/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/pg" && { [[ $EUID -ne 0 ]] || chown postgres: "$work/pg"; }
as_pg "$bindir/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale C >/dev/null
as_pg "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w -o \
  "-h 127.0.0.1 -p $pg_port -k '' -c shared_buffers=512MB -c max_connections=200 ${BENCH_PG_OPTIONS:-}" start >/dev/null
command psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE shop"

(cd "$work" && exec tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db \
  >"$work/tansu.log" 2>&1) &
pids+=($!)

export APP_DATABASE__URL="postgres://postgres@127.0.0.1:$pg_port/shop"
export APP_DATABASE__MAX_CONNECTIONS=${BENCH_POOL:-16}
export APP_AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export APP_PAYMENTS__WEBHOOK_SECRET=$(head -c 24 /dev/urandom | base64)
export APP_HTTP__BIND="127.0.0.1:$app_port"
export APP_EVENTS__BROKERS="127.0.0.1:$kafka_port"
# tansu answers every fetch after the consumer's full fetch wait and reads each partition
# from SQLite: with 4 groups, each partition costs CPU even when idle (6 partitions: 9 s of
# broker CPU in an idle 25 s run, 2 partitions: 3 s). `up local` runs 2 as well.
export APP_EVENTS__PARTITIONS=${APP_EVENTS__PARTITIONS:-2}
export APP_WORKER__METRICS_BIND="127.0.0.1:$metrics_port"
export APP_LOG__FILTER=warn
"$app_bin" migrate
"$app_bin" seed --products 50 >/dev/null 2>&1
variant=$(command psql -X -q -At -h 127.0.0.1 -p "$pg_port" -U postgres -d shop -c "
  WITH v AS (SELECT id FROM variants ORDER BY id LIMIT 1)
  UPDATE stock SET on_hand = on_hand + 1000000 WHERE variant_id = (SELECT id FROM v) AND warehouse_id = (SELECT min(warehouse_id) FROM stock WHERE variant_id = (SELECT id FROM v))
  RETURNING variant_id")
command psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d shop -c "
  INSERT INTO inventory_movements (variant_id, warehouse_id, kind, on_hand_delta, reserved_delta, reason)
  SELECT $variant, min(warehouse_id), 'restock', 1000000, 0, 'bench' FROM stock WHERE variant_id = $variant"

"$app_bin" serve >>"$work/app.log" 2>&1 &
pids+=($!)
"$app_bin" worker >>"$work/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$app_port/readyz" >/dev/null && break; sleep 0.1; done

# Busy and total jiffies of the whole machine (the "cpu" line of /proc/stat).
jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
echo "== $rate orders/s for $seconds s: API, worker, PostgreSQL and tansu on $(nproc) cores"
read -r busy0 total0 < <(jiffies)
BENCH_BASE="http://127.0.0.1:$app_port" BENCH_RATE=$rate BENCH_SECONDS=$seconds BENCH_VARIANT=$variant \
  /usr/bin/time -f "%U %S" -o "$work/load.cpu" "$load_bin"
read -r busy1 total1 < <(jiffies)
echo "== CPU seconds used (user+system) since start"
ps -o cputime=,args= -p "$(IFS=,; echo "${pids[*]}")" | sed 's/ --.*//'
awk '{printf "%d s load generator\n", $1+$2}' "$work/load.cpu"
echo "machine busy during the load (PostgreSQL is most of the rest): $(( 100 * (busy1 - busy0) / (total1 - total0) )) %"
echo "== worker metrics"
curl -fs "http://127.0.0.1:$metrics_port/metrics" | grep -E '^events_(published_total|consumed_total|failed_total|outbox_backlog)' || true

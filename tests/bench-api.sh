#!/usr/bin/env bash
# Load benchmark of the shop API: the release build of the app, a PostgreSQL of its own and
# wrk, all on this machine, over 10,000 seeded products.
#
#   bash tests/bench-api.sh [seconds per scenario, default 15] [connections, default 32]
#
# Scenarios: product detail (random ids), product list (a page of 20 filtered by category and
# brand), search (words and typos from product names), checkout (distinct customers, each
# with one unit in the cart). Afterwards it checks that no stock was oversold and that the
# ledger sums to the stock. Everything listens on loopback and is stopped at the end.
#
# The reads run once per catalog cache setup in BENCH_CACHES (default: all four):
#   local         the in-process cache alone (5 s TTL), as without Redis
#   none          no cache: every request reaches PostgreSQL
#   redis         the cache in Redis (a redis-server of its own), rate limits off
#   redis+limits  the same with the per-client API rate limit on (one more Redis call each)
# BENCH_READS picks the read scenarios (default: detail list search); BENCH_CHECKOUT=0 skips
# checkout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
duration=${1:-15}
connections=${2:-32}
products=${BENCH_PRODUCTS:-10000}
customers=${BENCH_CUSTOMERS:-30000}

bash tests/tools.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
SQLX_OFFLINE=true cargo build --release -p app --locked --quiet
app_bin=$CARGO_TARGET_DIR/release/app

work=$(mktemp -d "${TMPDIR:-/tmp}/shop-bench.XXXXXX")
chmod 755 "$work"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
app_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bindir=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
app_pid=""
redis_pid=""
cleanup() {
  [[ -n "$app_pid" ]] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
  [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  as_pg "$bindir/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== PostgreSQL on 127.0.0.1:$pg_port"
mkdir "$work/pg" && { [[ $EUID -ne 0 ]] || chown postgres: "$work/pg"; }
as_pg "$bindir/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale C >/dev/null
as_pg "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w -o \
  "-h 127.0.0.1 -p $pg_port -k '' -c shared_buffers=512MB -c max_connections=200" start >/dev/null
psql() { command psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE shop"

export APP_DATABASE__URL="postgres://postgres@127.0.0.1:$pg_port/shop"
# A small pool suits 2 cores: more connections only queue inside PostgreSQL.
export APP_DATABASE__MAX_CONNECTIONS=${BENCH_POOL:-8}
export APP_AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export APP_PAYMENTS__WEBHOOK_SECRET=$(head -c 24 /dev/urandom | base64)
export APP_HTTP__BIND="127.0.0.1:$app_port"
export APP_LOG__FILTER=warn
"$app_bin" migrate
echo "== seeding $products products"
"$app_bin" seed --products "$products"

echo "== $customers customers with one unit in the cart (for the checkout scenario)"
psql -d shop <<SQL
INSERT INTO products (slug, name, description, price_minor, currency, status)
VALUES ('bench-item', 'Bench item', 'Stock for the checkout benchmark', 1000, 'EUR', 'active');
INSERT INTO variants (product_id, sku, name, price_minor, currency)
SELECT (SELECT id FROM products WHERE slug = 'bench-item'), 'BENCH-' || n, 'Bench ' || n, 1000, 'EUR'
FROM generate_series(1, 20) n;
INSERT INTO warehouses (code, name) VALUES ('BENCH', 'Bench warehouse');
INSERT INTO stock (variant_id, warehouse_id, on_hand)
SELECT v.id, w.id, $customers FROM variants v, warehouses w WHERE v.sku LIKE 'BENCH-%' AND w.code = 'BENCH';
INSERT INTO inventory_movements (variant_id, warehouse_id, kind, on_hand_delta, reserved_delta, reason)
SELECT variant_id, warehouse_id, 'restock', on_hand, 0, 'bench' FROM stock
WHERE warehouse_id = (SELECT id FROM warehouses WHERE code = 'BENCH');
CREATE TEMP TABLE bench_users AS
SELECT gen_random_uuid() AS id, n FROM generate_series(1, $customers) n;
INSERT INTO users (id, email, password_hash, full_name)
SELECT id, 'bench' || n || '@example.com', 'not-a-hash', 'Bench ' || n FROM bench_users;
INSERT INTO addresses (id, user_id, recipient, line1, city, postal_code, country, is_default_shipping, is_default_billing)
SELECT gen_random_uuid(), id, 'Bench ' || n, '1 Load Street', 'Testville', '10115', 'DE', true, true FROM bench_users;
INSERT INTO carts (id, user_id) SELECT gen_random_uuid(), id FROM bench_users;
INSERT INTO cart_lines (cart_id, variant_id, quantity)
SELECT c.id, (SELECT id FROM variants WHERE sku = 'BENCH-' || (1 + u.n % 20)), 1
FROM carts c JOIN bench_users u ON u.id = c.user_id;
\copy (SELECT id FROM bench_users ORDER BY n) TO '$work/user-ids'
SQL

# Inputs for the scenarios.
read -r min_id max_id < <(psql -d shop -At -F' ' -c "SELECT min(id), max(id) FROM products WHERE status = 'active'")
psql -d shop -At -F' ' -c "SELECT c.slug, b.slug FROM products p JOIN categories c ON c.id = p.category_id
  JOIN brands b ON b.id = p.brand_id WHERE p.status = 'active' GROUP BY 1, 2 HAVING count(*) >= 3 ORDER BY 1, 2" >"$work/pairs"
psql -d shop -At -c "SELECT DISTINCT lower(w) FROM products, regexp_split_to_table(name, ' ') w WHERE length(w) > 3 ORDER BY 1" >"$work/words"
python3 - "$work" "$APP_AUTH__JWT_SECRET" <<'PY'
# Access tokens for the bench customers, signed like the app's (HS256, iss "shop").
import base64, hashlib, hmac, json, sys, time
work, secret = sys.argv[1], sys.argv[2].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
with open(f"{work}/user-ids") as ids, open(f"{work}/tokens", "w") as out:
    for uid in ids:
        claims = {"sub": uid.strip(), "role": "customer", "iat": now, "exp": now + 3600, "iss": "shop"}
        signing = f"{header}.{b64(json.dumps(claims).encode())}"
        sig = b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
        out.write(f"{signing}.{sig}\n")
PY

cat >"$work/detail.lua" <<LUA
math.randomseed(os.time())
request = function() return wrk.format("GET", "/api/v1/products/" .. math.random($min_id, $max_id)) end
LUA
cat >"$work/lines.lua" <<'LUA'
-- Reads a file of lines into a table.
function lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end
LUA
cat >"$work/list.lua" <<LUA
dofile("$work/lines.lua")
local pairs_ = lines("$work/pairs")
math.randomseed(os.time())
request = function()
  local c, b = pairs_[math.random(#pairs_)]:match("(%S+) (%S+)")
  return wrk.format("GET", "/api/v1/products?category=" .. c .. "&brand=" .. b .. "&limit=20")
end
LUA
cat >"$work/search.lua" <<LUA
dofile("$work/lines.lua")
local words = lines("$work/words")
math.randomseed(os.time())
request = function()
  local w = words[math.random(#words)]
  if math.random(4) == 1 and #w > 4 then  -- a typo: drop one letter
    local i = math.random(2, #w - 1)
    w = w:sub(1, i - 1) .. w:sub(i + 1)
  end
  return wrk.format("GET", "/api/v1/search?q=" .. w)
end
LUA
cat >"$work/checkout.lua" <<LUA
-- Each request checks out a different customer; threads take disjoint slices of the tokens.
dofile("$work/lines.lua")
local counter = 1
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args)
  tokens = lines("$work/tokens"); next_i = id
end
request = function()
  local t = tokens[next_i]; next_i = next_i + 2  -- wrk -t2
  if t == nil then t = tokens[1] end
  return wrk.format("POST", "/api/v1/checkout", {["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json"}, "{}")
end
LUA

# start_app TTL [redis URL] [API requests per minute, 0 = no limit]
start_app() {
  APP_CATALOG__CACHE_TTL_MS=$1 APP_REDIS__URL=${2:-} APP_REDIS__RATE_LIMIT__API__REQUESTS=${3:-0} \
    "$app_bin" serve >>"$work/app.log" 2>&1 &
  app_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$app_port/readyz" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$app_port/api/v1/products/$min_id" >/dev/null
}
stop_app() { kill "$app_pid"; wait "$app_pid" 2>/dev/null || true; app_pid=""; }

run() {
  local name=$1 script=$2 warm=${3:-warm}
  # A few seconds first, unmeasured: the figures are of a running shop, not a cold start.
  # (Not for checkout: each customer can check out once.)
  [[ $warm == cold ]] || wrk -t2 -c"$connections" -d3s -s "$work/$script" "http://127.0.0.1:$app_port" >/dev/null
  echo
  echo "== $name: wrk -t2 -c$connections -d${duration}s --latency"
  wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/$script" "http://127.0.0.1:$app_port" \
    | grep -E 'Requests/sec|Latency  |50%|90%|99%|requests in|Non-2xx|Socket errors'
}

start_redis() {
  [[ -n "$redis_pid" ]] && return
  redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --logfile "$work/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "== redis-server on 127.0.0.1:$redis_port"
}

# The reads once per cache setup, side by side.
for cache in ${BENCH_CACHES:-local none redis redis+limits}; do
  case $cache in
    local) ttl=5000 redis_url="" api_limit=0 ;;
    none) ttl=0 redis_url="" api_limit=0 ;;
    redis) start_redis; ttl=5000 redis_url="redis://127.0.0.1:$redis_port" api_limit=0 ;;
    # A budget no wrk connection exhausts: the limiter's cost, not its refusals.
    redis+limits) start_redis; ttl=5000 redis_url="redis://127.0.0.1:$redis_port" api_limit=100000000 ;;
    *) echo "unknown cache setup: $cache" >&2; exit 2 ;;
  esac
  echo
  echo "######## app (release) on 127.0.0.1:$app_port, pool $APP_DATABASE__MAX_CONNECTIONS, cache: $cache (TTL ${ttl} ms)"
  start_app "$ttl" "$redis_url" "$api_limit"
  for read in ${BENCH_READS:-detail list search}; do
    case $read in
      detail) run "product detail (random ids over $products products)" detail.lua ;;
      list) run "product list (category + brand, page of 20)" list.lua ;;
      search) run "search (words and typos)" search.lua ;;
    esac
  done
  stop_app
done

[[ ${BENCH_CHECKOUT:-1} == 1 ]] || exit 0
echo
echo "######## checkout"
start_app 5000
run "checkout (one unit, distinct customers)" checkout.lua cold

echo
echo "== checks after checkout"
psql -d shop -At <<'SQL'
SELECT 'orders placed: ' || count(*) FROM orders;
SELECT 'oversold stock rows (reserved > on_hand): ' || count(*) FROM stock WHERE reserved > on_hand OR on_hand < 0;
SELECT 'units reserved vs ordered: ' || (SELECT coalesce(sum(reserved), 0) FROM stock) || ' vs '
       || (SELECT coalesce(sum(quantity), 0) FROM order_items);
SELECT 'stock rows whose ledger does not sum to the stock: ' || count(*) FROM stock s
  LEFT JOIN (SELECT variant_id, warehouse_id, sum(on_hand_delta) oh, sum(reserved_delta) r
             FROM inventory_movements GROUP BY 1, 2) m USING (variant_id, warehouse_id)
  WHERE s.on_hand <> coalesce(m.oh, 0) OR s.reserved <> coalesce(m.r, 0);
SQL
grep -c '"level":"ERROR"' "$work/app.log" | sed 's/^/app errors logged: /' || true

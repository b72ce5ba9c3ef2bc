#!/usr/bin/env bash
# Benchmark of failover through the whole `shopctl up local` topology, with Patroni's default
# timings (ttl 30, loop_wait 10, retry_timeout 10) and with ours ([local.patroni] of
# environments/local.toml), one after the other in one run, printed side by side.
#
#   bash tests/bench-failover.sh [MODE] [RUNS]     (defaults: all, 1)
#
# Each variant runs in its own copy of environments/ and templates/ on the default local
# ports: `up local`, `failover-test local --mode MODE --runs RUNS`, `down local --purge`.
# The reports (JSON, Markdown, SVG) are kept under the printed directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mode=${1:-all}
runs=${2:-1}

bash tests/tools.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
export PATH=${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/tools/bin:$PATH
SQLX_OFFLINE=true cargo build --release --locked --quiet -p shopctl -p app
shopctl=$CARGO_TARGET_DIR/release/shopctl

out=$(mktemp -d "${TMPDIR:-/tmp}/shopctl-bench-failover.XXXXXX")
# Patroni and PostgreSQL run as the postgres account when this runs as root.
chmod 755 "$out"
current=""
cleanup() { [[ -z $current ]] || "$shopctl" -C "$current" down local --yes --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT

# variant name, then `key = value` lines for [local.patroni]
variant() {
  local name=$1 ttl=$2 loop_wait=$3 retry_timeout=$4
  local dir=$out/$name
  mkdir -p "$dir" && cp -r environments templates "$dir/"
  python3 - "$dir/environments/local.toml" "$ttl" "$loop_wait" "$retry_timeout" <<'EOF'
import re, sys
path, ttl, loop_wait, retry = sys.argv[1:]
text = open(path).read()
for key, value in (("ttl", ttl), ("loop_wait", loop_wait), ("retry_timeout", retry)):
    text, n = re.subn(rf"(?m)^{key} = \d+$", f"{key} = {value}", text, count=1)
    assert n == 1, key
open(path, "w").write(text)
EOF
  current=$dir
  echo "== $name: ttl $ttl, loop_wait $loop_wait, retry_timeout $retry_timeout" >&2
  "$shopctl" -C "$dir" up local >/dev/null
  # A failed check is a result here, not an error of the script.
  "$shopctl" -C "$dir" failover-test local --mode "$mode" --runs "$runs" --yes --json \
    >"$out/$name.json" || true
  "$shopctl" -C "$dir" down local --yes --purge >/dev/null
  current=""
}

tuned=$(python3 -c 'import tomllib; p = tomllib.load(open("environments/local.toml", "rb"))["local"]["patroni"]; print(p["ttl"], p["loop_wait"], p["retry_timeout"])')
variant defaults 30 10 10
# shellcheck disable=SC2086
variant tuned $tuned

python3 - "$out/defaults.json" "$out/tuned.json" "${tuned// //}" <<'EOF'
import json, sys
def load(path):
    try:
        return json.load(open(path))["runs"]
    except Exception as e:
        sys.exit(f"{path}: no outcome ({e})")
defaults, tuned = load(sys.argv[1]), load(sys.argv[2])
def ms(v):
    return "—" if v is None else f"{v:,} ms"
def cell(r):
    m = r["measures"]
    failed = [c["name"] for c in r["checks"] if not c["passed"]]
    lost = next((c["detail"] for c in r["checks"] if c["name"] == "zero acknowledged writes lost"), "?")
    return (ms(m["write_outage_ms"]), ms(m.get("api_outage_ms")), ms(m["detect_ms"]),
            lost.split(";")[0], "pass" if not failed else "FAIL: " + ", ".join(failed))
print("| mode | run | timings | write outage | API outage | detect | ledger | verdict |")
print("|---|---|---|---|---|---|---|---|")
for name, runs in (("defaults 30/10/10", defaults), ("tuned " + sys.argv[3], tuned)):
    for i, r in enumerate(runs):
        print("| " + " | ".join((r["mode"], str(i + 1), name) + cell(r)) + " |")
EOF
echo "reports: $out" >&2

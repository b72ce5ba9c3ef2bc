#!/usr/bin/env bash
# Benchmark of `shopctl image`: the image's compressed size, a first build, a rebuild with no
# code change (cargo's own no-op timed apart), and two pushes to a real registry (Debian's
# docker-registry on a loopback port): what the first uploads, what the second does not.
#
#   bash tests/bench-image.sh
#
# Release builds of shopctl and the app; the image layout goes to a temporary copy of the
# project, so .shopctl/image here is left alone. Prints a markdown table.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash tests/tools.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
SQLX_OFFLINE=true cargo build --release --locked --quiet -p shopctl -p app
shopctl=$CARGO_TARGET_DIR/release/shopctl
app=$CARGO_TARGET_DIR/release/app

work=$(mktemp -d "${TMPDIR:-/tmp}/shopctl-bench-image.XXXXXX")
registry_pid=""
cleanup() {
  [[ -z $registry_pid ]] || kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp -r environments templates "$work/"

seconds() { python3 -c 'import sys,time; print(f"{time.time()-float(sys.argv[1]):.2f}")' "$1"; }
now() { python3 -c 'import time; print(time.time())'; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
t=$(now); first=$("$shopctl" -C "$work" image build --json --app-bin "$app" 2>/dev/null); first_s=$(seconds "$t")
# The package set every build here uses (another set would recompile dependencies).
t=$(now); SQLX_OFFLINE=true cargo build --release --locked --quiet -p shopctl -p app; noop_s=$(seconds "$t")
t=$(now); again=$("$shopctl" -C "$work" image build --json --app-bin "$app" 2>/dev/null); again_s=$(seconds "$t")
size=$(field size_bytes <<<"$first")
[[ $(field digest <<<"$first") == $(field digest <<<"$again") ]] || { echo "rebuild changed the digest" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
registry=$(command -v docker-registry || echo /usr/bin/docker-registry)
"$registry" serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
push() { "$shopctl" -C "$work" image push staging --json --registry "http://127.0.0.1:$port" 2>/dev/null; }
t=$(now); p1=$(push); p1_s=$(seconds "$t")
t=$(now); p2=$(push); p2_s=$(seconds "$t")

echo
echo "shopctl image, release build, $(nproc) cores, $(date -u +%F)"
echo
echo "| measure | figure | target |"
echo "|---|---|---|"
echo "| image size (compressed: config, layers, manifest) | $(python3 -c "print(f'{$size/1e6:.1f} MB')") | < 25 MB |"
echo "| first build (layout empty; binary already built) | ${first_s} s | |"
echo "| cargo build no-op | ${noop_s} s | |"
echo "| rebuild, no code change (beyond cargo's no-op) | ${again_s} s | < 5 s |"
echo "| first push: blobs / bytes uploaded | $(field blobs_uploaded <<<"$p1") / $(field bytes_uploaded <<<"$p1") B in ${p1_s} s | |"
echo "| second push: blobs / bytes uploaded | $(field blobs_uploaded <<<"$p2") / $(field bytes_uploaded <<<"$p2") B in ${p2_s} s | 0 bytes |"

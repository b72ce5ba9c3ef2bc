#!/usr/bin/env bash
# Benchmarks of the foundation's targets, with hyperfine (installed by
# tests/tools.sh): `shopctl --help` under 10 ms, and `shopctl render` of all
# three environments under 50 ms. Prints hyperfine's Markdown table; the
# figures go to docs/benchmarks.md with the date and machine.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tests/tools.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
cargo build --release --locked -p shopctl
shopctl=$CARGO_TARGET_DIR/release/shopctl
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(uname -sm), $(date -u +%Y-%m-%d)"
# One --prepare per command, in order: only the fresh render starts empty.
"$shopctl" -C "$root" render --all --out "$out/rendered" 2>/dev/null
hyperfine --warmup 5 --runs 50 --shell=none --export-markdown "$out/bench.md" \
  --prepare true --command-name 'shopctl --help' "$shopctl --help" \
  --prepare "rm -rf $out/fresh" --command-name 'shopctl render --all (3 environments, empty output dir)' \
  "$shopctl -C $root render --all --out $out/fresh" \
  --prepare true --command-name 'shopctl render --all --check (3 environments, up to date)' \
  "$shopctl -C $root render --all --check --out $out/rendered"
cat "$out/bench.md"

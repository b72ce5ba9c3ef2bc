#!/usr/bin/env bash
# Installs what shopctl's tests, benchmarks and local runs need, and only what
# is missing: Debian packages with apt-get, Python tools into a venv outside
# the clone (reused across clones; refreshed when tests/requirements.txt
# changes). Safe to run again and again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/shopctl
venv=$cache/venv

say() { printf 'tools: %s\n' "$*" >&2; }

# Debian packages, by the command that proves each is present. (The API tests and the
# benchmark start their own redis-server on a loopback port.)
declare -A packages=(
  [python3]=python3
  [hyperfine]=hyperfine
  [wrk]=wrk
  [psql]=postgresql-client
  # The job tests start their own broker node on loopback ports. Debian installs its
  # commands under /usr/sbin, which is not on every user's PATH: checked there too.
  [rabbitmq-server]=rabbitmq-server
  [redis-server]=redis-server
  # The local HA topology (`shopctl up local`): etcd as Patroni's DCS, Patroni (with
  # python3-etcd, its etcd client), HAProxy in front of PostgreSQL, nginx in front of the app.
  [etcd]=etcd-server
  [patroni]=patroni
  [haproxy]=haproxy
  # The benchmark scripts (tests/bench-*.sh) poll readiness and metrics with curl.
  [curl]=curl
  [nginx]=nginx-light
  # `shopctl image`: a real OCI registry (the CNCF distribution registry) and skopeo to pull
  # images back; both started or run by the image tests on loopback.
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  # The HTTPS test of `up <env>`'s smoke step makes a throwaway self-signed certificate.
  [openssl]=openssl
)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${packages[$cmd]}")
done
# The PostgreSQL server (the API tests start their own on a loopback port). Debian keeps
# its binaries off PATH, in a versioned directory; pg_trgm comes with the server package.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# Patroni talks to etcd through python3-etcd (a Recommends of Debian's patroni).
if ! /usr/bin/python3 -c 'import etcd' >/dev/null 2>&1; then
  missing+=(python3-etcd)
fi
# A venv needs ensurepip, which Debian ships separately.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  # policy-rc.d answering 101 keeps Debian's maintainer scripts from starting system services
  # (etcd, haproxy, nginx, redis, rabbitmq, postgresql, docker-registry): shopctl and the tests
  # run their own on their own ports.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where systemd runs, stop and disable the services of the packages just installed.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for package in "${missing[@]}"; do
      case $package in
        etcd-server) unit=etcd ;; nginx-light) unit=nginx ;;
        patroni | haproxy | redis-server | rabbitmq-server | postgresql | docker-registry) unit=$package ;;
        *) continue ;;
      esac
      $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
fi

# Python tools (moto_server, checkov, schemathesis, aiosmtpd, kubernetes-validate) at pinned versions.
want=$(sha256sum "$root/tests/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  say "installing Python tools from tests/requirements.txt (first time: a few minutes)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/requirements.txt"
  echo "$want" >"$venv/.requirements.sha256"
fi

# The Kafka-protocol broker for local runs and tests: tansu, built from source once (about
# 15 minutes on 2 cores) and reused. Without --locked the build fails; without the libsql
# feature it has no storage engine that survives a restart.
tools=$cache/tools
tansu_version=0.6.0
if ! "$tools/bin/tansu" --version 2>/dev/null | grep -q "$tansu_version"; then
  say "building tansu $tansu_version (first time: about 15 minutes)"
  cargo install --quiet --locked tansu --version "$tansu_version" --features libsql --root "$tools"
fi

# Terraform is not in Debian's archive or any package registry this project
# can reach, so it cannot be installed from here: say so plainly.
if ! command -v terraform >/dev/null 2>&1; then
  say "error: terraform is not on PATH; install Terraform 1.6 or newer (HashiCorp's release archive or package repository)"
  exit 1
fi
say "ready: $(env -u TF_CLI_CONFIG_FILE terraform version | head -n1), $("$tools/bin/tansu" --version | head -n1), moto $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))'), checkov $("$venv/bin/checkov" --version), $("$venv/bin/schemathesis" --version)"

#!/usr/bin/env bash
# Runs every test of the project: installs what is missing (tests/tools.sh),
# then the workspace's tests, which start the real services they need
# (PostgreSQL, the tansu Kafka broker, moto_server, Terraform) on loopback ports and stop them afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash tests/tools.sh
# Tools built by tests/tools.sh (the tansu broker).
export PATH=${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/tools/bin:$PATH
# One target directory outside the clone, shared by every clone and by CI.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopctl/target}
# Keep rendered snapshots strict: a changed template must update them on purpose.
export INSTA_UPDATE=${INSTA_UPDATE:-no}
# Snapshots of this clone, even if a test binary was built in another clone
# sharing the build directory.
export INSTA_WORKSPACE_ROOT=$root
# The app's SQL is checked at compile time against the query data committed in app/.sqlx
# (tests/sqlx-prepare.sh refreshes it), never against whatever DATABASE_URL points to.
export SQLX_OFFLINE=true
cargo test --workspace --locked "$@"

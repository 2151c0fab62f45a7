#!/usr/bin/env bash
# Upstream's kubectl command tests (test/cmd, what `make test-cmd` runs) against a fresh
# `keelson server`, outside CI (issue [conformance]). Not part of CI.
#
#   scripts/test-cmd-upstream.sh [--timeout SECONDS] [WHAT ...]
#
#   WHAT               test functions to run, as upstream's `make test-cmd WHAT=…`: `pod`
#                      runs run_pod_tests (run_pod_tests is accepted too) [default: all of
#                      runTests, in upstream's order]
#   --timeout SECS     bound on the whole run; past it the run is stopped and the test
#                      function in flight is reported as "timeout" [default: 5400]
#
# The test bodies are upstream's, unchanged: test/cmd/*.sh, hack/lib/* and the fixtures
# are copied from k8s.io/kubernetes at the release conformance/go.mod pins (the Go
# module cache; nothing of it is in this repository) into a temporary tree, and
# hack/make-rules/test-cmd.sh's own steps run there — setup, create_node (extracted
# verbatim from test-cmd.sh) and runTests (test/cmd/legacy-script.sh), which records every
# test function with record_command — with only the start-up replaced:
#   - no etcd, kube-apiserver or kube-controller-manager: `keelson server` on a fresh
#     data dir, with free loopback ports, without its scheduler (test-cmd.sh runs none:
#     the tests expect pods to stay unscheduled, with no FailedScheduling events), and
#     with test-cmd.sh's apiserver settings that Keelson has: --service-cidr 10.0.0.0/24
#     (its --service-cluster-ip-range), its admission plugins (LimitRanger and ResourceQuota on; ServiceAccount,
#     DefaultStorageClass, DefaultTolerationSeconds and the admission webhooks off) and
#     PodSecurity at kube-apiserver's default (privileged), not Keelson's (baseline);
#   - the cluster CA is a fresh one named as test-cmd.sh's (CN=127.0.0.1, which
#     authentication.sh looks for among the CAs the server accepts client certificates of);
#   - test-cmd.sh authorizes with RBAC,AlwaysAllow; Keelson has RBAC alone, so a
#     ClusterRoleBinding gives every user cluster-admin;
#   - setup() is legacy-script.sh's with the credentials swapped: the `test` context's
#     user is Keelson's admin (the client certificate of <data-dir>/admin.kubeconfig),
#     not the bearer token `admin-token`; the server takes that token too, as
#     test-cmd.sh's does (--token-auth-file hack/testdata/auth-tokens.csv), for the
#     commands that send it themselves (kube_flags_with_token, curl -H 'Authorization:
#     Bearer admin-token', the exec credential plugins);
#   - ALLOW_SKEW=1 (upstream's switch): no --match-server-version, since Keelson's
#     /version carries its own gitCommit;
#   - the -custom version check before runTests (kube-apiserver --version=…) is left out;
#   - kube-apiserver's --cert-dir is $TMPDIR, whose apiserver.crt kubeconfig.sh reads:
#     Keelson's serving certificate is put there; and the module cache keeps no file
#     modes, so the tree's scripts (plugins.sh's kubectl plugins) are made executable.
# run_multi_resources_tests reads a manifest from raw.githubusercontent.com: without
# network access it fails. A whole run takes about 12 minutes.
# Keelson is this checkout's, built with --release, unless $KEELSON names a binary.
# kubectl and kubectl-convert are upstream's at that release, built once from the module
# proxy into $KEELSON_TEST_CMD_DIR/bin (default ~/.cache/keelson/test-cmd).
#
# Output: a table, one row a test function: pass, fail (with the first failing assertion,
# or the command that failed under errexit), timeout or "not run". Results in
# $KEELSON_TEST_CMD_DIR/results/<date>-<time>/: test-cmd.log (the whole run),
# server.log, junit_test-cmd.xml (record_command's report), table.txt. The server, the
# tests and everything they started are stopped and the temporary tree, data dir and
# HOME removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

TIMEOUT=5400
WHAT=()
while (($#)); do
    case "$1" in
        --timeout) TIMEOUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "test-cmd: unknown argument $1 (see --help)" >&2; exit 2 ;;
        *) w=${1#run_}; WHAT+=("${w%_tests}"); shift ;;
    esac
done
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "test-cmd: --timeout takes seconds" >&2; exit 2; }

source scripts/setup.sh
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "test-cmd: Go is required (/usr/local/go/bin/go)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test-cmd: python3 is required" >&2; exit 1; }

DIR="${KEELSON_TEST_CMD_DIR:-$HOME/.cache/keelson/test-cmd}"
mkdir -p "$DIR/module" "$DIR/bin"

# --- upstream's kubectl and kubectl-convert, from conformance/go.mod ---------------------
# Built in a copy of conformance/'s module (-mod=mod: their dependencies join the copy's
# go.sum, not the repository's), stamped with the release as upstream's build does.
cp conformance/go.mod conformance/go.sum conformance/tools.go "$DIR/module/"
k8s_version=$(cd conformance && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
upstream=$(cd conformance && "$GO" list -m -f '{{.Dir}}' k8s.io/kubernetes)
if [ -z "$upstream" ] || [ ! -f "$upstream/test/cmd/legacy-script.sh" ]; then
    (cd "$DIR/module" && "$GO" mod download k8s.io/kubernetes)
    upstream=$(cd "$DIR/module" && "$GO" list -mod=mod -m -f '{{.Dir}}' k8s.io/kubernetes)
fi
for cmd in kubectl kubectl-convert; do
    if [ ! -x "$DIR/bin/$cmd" ] || [ conformance/go.mod -nt "$DIR/bin/$cmd" ]; then
        echo "test-cmd: building $cmd $k8s_version into $DIR/bin" >&2
        ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version"
        ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$k8s_version" | cut -d. -f1 | tr -d v)"
        ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
        ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
        (cd "$DIR/module" && nice -n 19 "$GO" build -mod=mod -ldflags "$ldflags" \
            -o "$DIR/bin/$cmd.new" "k8s.io/kubernetes/cmd/$cmd")
        mv "$DIR/bin/$cmd.new" "$DIR/bin/$cmd"
    fi
done

# --- keelson ----------------------------------------------------------------------------
# $KEELSON: a keelson binary to run instead of building this checkout's.
if [ -z "${KEELSON:-}" ]; then
    nice -n 19 cargo build --release --locked -p keelson >&2
    KEELSON="$CARGO_TARGET_DIR/release/keelson"
fi

RESULTS="$DIR/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
work=$(mktemp -d /tmp/keelson-testcmd-XXXXXX)
server_pid=""
tests_pid=""
# legacy-script.sh's record_command canary leaves a directory in /tmp: ours are removed.
canaries_before=$(ls -d /tmp/record_command_canary.* 2>/dev/null || true)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    # The tests run in their own process group (timeout's): it, kubectl proxy and any
    # other command a test left in the background.
    if [ -n "$tests_pid" ] && kill -0 "$tests_pid" 2>/dev/null; then
        kill -TERM -- "-$tests_pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$tests_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$tests_pid" 2>/dev/null
    fi
    if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
        wait "$server_pid" 2>/dev/null
    fi
    wait 2>/dev/null
    local d
    for d in /tmp/record_command_canary.*; do
        [ -d "$d" ] && ! grep -qxF "$d" <<<"$canaries_before" && rm -rf "$d"
    done
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
    echo "test-cmd: results in $RESULTS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- upstream's tree --------------------------------------------------------------------
# What test-cmd.sh and the tests read, relative to the repository root they run in.
tree="$work/kubernetes"
mkdir -p "$tree/test/e2e" "$tree/third_party/forked" "$tree/_output/bin"
cp -r "$upstream/hack" "$tree/"
cp -r "$upstream/test/cmd" "$upstream/test/fixtures" "$tree/test/"
cp -r "$upstream/test/e2e/testing-manifests" "$tree/test/e2e/"
cp -r "$upstream/third_party/forked/shell2junit" "$tree/third_party/forked/"
chmod -R u+w "$tree"
# The module cache keeps no file modes: scripts (the kubectl plugins of plugins.sh among
# them) get back the executable bit they have in upstream's repository.
grep -rlI --null '^#!' "$tree" | xargs -0 -r chmod +x
ln -s "$DIR/bin/kubectl" "$DIR/bin/kubectl-convert" "$tree/_output/bin/"

# --- the server -------------------------------------------------------------------------
# kube-apiserver's PodSecurity default when no configuration is given.
cat > "$work/admission.yaml" <<'EOF'
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: privileged
      enforce-version: latest
      audit: privileged
      audit-version: latest
      warn: privileged
      warn-version: latest
EOF
# test-cmd.sh's client CA and cluster signer is hack/testdata/ca, CN=127.0.0.1, which
# authentication.sh checks the server names to clients; that certificate is X.509 v1,
# which Keelson does not take as a CA: a fresh one of the same name is the cluster CA.
mkdir -p "$work/data/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=127.0.0.1 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature \
    -keyout "$work/data/tls/ca.key" -out "$work/data/tls/ca.crt" 2>/dev/null
chmod 600 "$work/data/tls/ca.key" "$work/data/tls/ca.crt"
"$KEELSON" server --data-dir "$work/data" --https-listen-port 0 --bind-address 127.0.0.1 \
    --controller-manager-secure-port 0 --disable-scheduler \
    --service-cidr 10.0.0.0/24 \
    --enable-admission-plugins LimitRanger,ResourceQuota \
    --disable-admission-plugins ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --pod-security-admission-config-file "$work/admission.yaml" \
    --token-auth-file "$tree/hack/testdata/auth-tokens.csv" \
    2> "$RESULTS/server.log" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q 'ready: kubectl' "$RESULTS/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q 'ready: kubectl' "$RESULTS/server.log" \
    || { echo "test-cmd: the server did not start" >&2; tail -20 "$RESULTS/server.log" >&2; exit 1; }
kubeconfig="$work/data/admin.kubeconfig"
port=$(grep -o 'server=https://127.0.0.1:[0-9]*' "$RESULTS/server.log" | head -1 | sed 's/.*://')
for _ in $(seq 1 100); do
    "$DIR/bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.1
done
# test-cmd.sh's --authorization-mode=RBAC,AlwaysAllow: what RBAC does not allow,
# AlwaysAllow does, for any user (impersonation.sh acts as user1). Keelson authorizes by
# RBAC alone: every user gets cluster-admin.
"$DIR/bin/kubectl" --kubeconfig "$kubeconfig" create clusterrolebinding keelson-test-cmd-always-allow \
    --clusterrole cluster-admin --group system:authenticated --group system:unauthenticated >/dev/null
# The admin's client certificate, for setup()'s `test-admin` user.
python3 - "$kubeconfig" "$work/admin.crt" "$work/admin.key" <<'PY'
import base64, re, sys
text = open(sys.argv[1]).read()
for field, out in (("client-certificate-data", sys.argv[2]), ("client-key-data", sys.argv[3])):
    m = re.search(field + r":\s*(\S+)", text)
    open(out, "wb").write(base64.b64decode(m.group(1)))
PY
echo "test-cmd: keelson $("$DIR/bin/kubectl" --kubeconfig "$kubeconfig" version -o json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') at https://127.0.0.1:$port, upstream test/cmd $k8s_version" >&2

# --- the tests --------------------------------------------------------------------------
# hack/make-rules/test-cmd.sh from `setup` on, with setup() and the start-up replaced.
cat > "$work/test-cmd.sh" <<'EOF'
set -o errexit
set -o nounset
set -o pipefail
cd "$KUBE_ROOT"
source "${KUBE_ROOT}/hack/lib/init.sh"
source "${KUBE_ROOT}/hack/lib/test.sh"
source "${KUBE_ROOT}/test/cmd/legacy-script.sh"
# create_node, verbatim: from its first line to the `}` after its here-document.
eval "$(awk '/^function create_node\(\) \{/ { on = 1 } on { print } on && /^__EOF__$/ { doc = 1 }
    on && doc && /^}$/ { exit }' "${KUBE_ROOT}/hack/make-rules/test-cmd.sh")"

# legacy-script.sh's setup(), but for etcd (none), building kubectl (done) and the
# credentials: Keelson's admin certificate instead of the token admin-token.
setup() {
  kube::util::trap_add cleanup EXIT SIGINT
  kube::util::ensure-temp-dir
  HOME="${KUBE_TEMP}"
  kube::util::ensure-gnu-sed
  kube::log::status "Running kubectl with no options"
  "${THIS_PLATFORM_BIN}/kubectl"
  CONTEXT="test"
  kubectl config set-credentials test-admin --client-certificate "${KEELSON_ADMIN_CERT}" \
    --client-key "${KEELSON_ADMIN_KEY}" --embed-certs
  kubectl config set-cluster local --insecure-skip-tls-verify --server "https://127.0.0.1:${SECURE_API_PORT}"
  kubectl config set-context "${CONTEXT}" --user test-admin --cluster local
  kubectl config use-context "${CONTEXT}"
  kubectl config view
  kube::log::status "Setup complete"
}

setup
create_node
export SUPPORTED_RESOURCES=("*")
runTests
kube::log::status "TESTS PASSED"
EOF
mkdir -p "$work/tmp" "$work/junit"
# test-cmd.sh starts kube-apiserver with --cert-dir=${TMPDIR:-/tmp/}, where it writes its
# serving certificate apiserver.crt, which kubeconfig.sh's tests read: Keelson's.
cp "$work/data/tls/serving-kube-apiserver.crt" "$work/tmp/apiserver.crt"
started=$(date +%s)
set +e
# timeout runs the tests in a process group of their own (see cleanup).
env KUBE_ROOT="$tree" SECURE_API_PORT="$port" KEELSON_ADMIN_CERT="$work/admin.crt" \
    KEELSON_ADMIN_KEY="$work/admin.key" ALLOW_SKEW=1 KUBE_VERBOSE=4 TMPDIR="$work/tmp" \
    KUBE_JUNIT_REPORT_DIR="$work/junit" WHAT="${WHAT[*]}" TERM="${TERM:-xterm}" LANG=C \
    KUBECONFIG= timeout -s TERM --kill-after=30 "$TIMEOUT" bash "$work/test-cmd.sh" \
    > "$RESULTS/test-cmd.log" 2>&1 < /dev/null &
tests_pid=$!
wait "$tests_pid"
rc=$?
tests_pid=""
set -e
elapsed=$(( $(date +%s) - started ))
cp "$work/junit/junit_test-cmd.xml" "$RESULTS/" 2>/dev/null || true
[ "$rc" = 124 ] && echo "test-cmd: stopped after --timeout ${TIMEOUT}s" >&2

# --- the table --------------------------------------------------------------------------
# Every record_command of runTests in order (or WHAT's), and what its part of the log says.
python3 - "$RESULTS/test-cmd.log" "$tree/test/cmd/legacy-script.sh" "$rc" "$elapsed" "${WHAT[@]}" \
    <<'PY' | tee "$RESULTS/table.txt"
import re, sys
log_path, legacy, rc, elapsed, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\(B")
lines = [ansi.sub("", l.rstrip("\n")) for l in open(log_path, errors="replace")]
if what:
    expected = ["run_%s_tests" % w for w in what]
else:
    expected = []
    for l in open(legacy):
        m = re.match(r"\s*record_command (run_\w+)", l)
        if m and m.group(1) not in expected:
            expected.append(m.group(1))

caller_line = re.compile(r"(\d+) (?:\S+ )?(\S+\.sh)$")  # bash's `caller`: LINE [FUNCTION] FILE

def first_failure(seg):
    for i, l in enumerate(seg):
        m = re.search(r"Error in (\S+:\d+)\. '(.*)' exited with status (\S+)", l)
        if m and "hack/lib/" not in m.group(1):
            return "%s: `%s` exited %s" % (m.group(1).split("/")[-1], m.group(2), m.group(3))
        if re.search(r"\bFAIL!?\b", l) and "FAILED TESTS" not in l:
            loc = l.split(": FAIL")[0].strip() if ": FAIL" in l else ""
            rest = [x.strip() for x in seg[i + 1:] if x.strip()]
            if not loc:
                # The helpers without a location print `caller` after what they got.
                for x in rest:
                    m = caller_line.match(x)
                    if m:
                        loc = "%s:%s" % (m.group(2).split("/")[-1], m.group(1))
                        break
            detail = " | ".join(x for x in rest[:3] if not caller_line.match(x))
            return ("%s: %s" % (loc or "?", detail))[:220]
    # A test that gave up by itself (`exit 1` after saying why).
    said = [l.strip() for l in seg if re.search(r"Unexpected|error", l)]
    return said[-1][:220] if said else "see test-cmd.log"

results, current, seg = {}, None, []
for l in lines:
    m = re.match(r"Recording: (\S+)", l)
    if m:
        current, seg = m.group(1), []
        continue
    m = re.match(r"\+\+\+ exit code: (\d+)", l)
    if m and current:
        results[current] = ("pass", "") if m.group(1) == "0" else ("fail", first_failure(seg))
        current = None
        continue
    if current:
        seg.append(l)
if current:
    results[current] = ("timeout" if rc == 124 else "fail", first_failure(seg) if rc != 124 else "still running at --timeout")

width = max([len(n) for n in expected + list(results)] + [8])
order = expected + [n for n in results if n not in expected and n != "record_command_canary"]
counts = {}
for n in order:
    state, detail = results.get(n, ("not run", ""))
    counts[state] = counts.get(state, 0) + 1
    print("%-*s  %-7s  %s" % (width, n, state, detail))
print("\n" + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())) + " in %ss" % elapsed)
if rc not in (0, 124):
    failed = [l for l in lines if "FAILED TESTS" in l]
    print("runTests ended with status %d%s" % (rc, (": " + failed[-1]) if failed else ""))
    if any(n not in results for n in order):
        # errexit outside record_command (runTests' own checks) ends the whole run.
        outside = [l.strip() for l in lines if re.search(r"Error in (\S+:\d+)\.", l)]
        print("stopped outside a test function: " + (outside[-1] if outside else "see test-cmd.log"))
PY

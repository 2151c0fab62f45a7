#!/usr/bin/env bash
# Upstream's conformance suite against a fresh `keelson server`, outside CI (issue
# [conformance]; docs/conformance.md has the latest figures).
#
#   scripts/conformance.sh [--focus REGEX] [--skip REGEX] [--spec-timeout SECONDS]
#                          [--parallel N] [--release]
#
#   --focus REGEX         specs to run, matched against the full spec text
#                         [default: \[Conformance\]]
#   --skip REGEX          specs to leave out [default: none]
#   --spec-timeout SECS   each spec's bound: past it ginkgo interrupts the spec (it is
#                         reported as failed, "interrupted") and runs its cleanup
#                         [default: 1800, above upstream's own longest waits]
#   --parallel N          specs run at once; [Serial] specs always run alone, after the
#                         others [default: 1, as a certified run]
#   --release             build Keelson with --release [default: a debug build]
#
# Builds (when missing or stale) upstream's e2e.test and kubectl from the Go module in
# conformance/ (k8s.io/kubernetes at the 1.34 release Keelson serves, fetched by the Go
# tool; nothing of it is in this repository) into $KEELSON_CONFORMANCE_DIR (default
# ~/.cache/keelson/conformance), builds keelson, starts `keelson server` on a fresh
# temporary data dir on a free loopback port, and runs every selected spec as its own
# e2e.test process with its own bound, so a spec that waits for pods that never start
# costs its bound, not the run. Results go to
# $KEELSON_CONFORMANCE_DIR/results/conformance-<date>-<time>/:
#   junit.xml     every selected spec, merged from the per-spec reports
#   e2e.log       every spec's e2e.test output (--ginkgo.v), in order
#   specs/        the same, one log and one JUnit report per spec
#   server.log    the server's log; audit.log.gz its audit log (every request)
#   summary.txt   "N passed, M failed, K skipped" and the failed specs
# The server and every e2e.test are stopped and the data dir removed on exit, also on
# failure or Ctrl-C.
#
# Nodes: until Keelson runs a kubelet there are no nodes, and e2e.test refuses to start
# without Ready ones. When the cluster has no node, the script passes
#   --allowed-not-ready-nodes=-1  skip the wait for Ready schedulable nodes and for
#                                 kube-system's pods and DaemonSets (-1 = no waiting)
#   --num-nodes=1                 skip counting schedulable nodes (which fails on zero);
#                                 1 is the node `keelson server` will run
# so the specs that need no pods run now. Once a node registers these are left out and
# the suite checks nodes as on any cluster. --e2e-verify-service-account stays on:
# Keelson's controllers create each namespace's `default` ServiceAccount and
# kube-root-ca.crt, which every spec waits for.
#
# Images: not handled yet. The specs that run pods need upstream's test images
# (agnhost, busybox, httpd, nginx, pause, …; the list is `e2e.test --list-images`), which
# issue [conformance] says to build here from source and Debian packages under the
# names the suite asks for and to drop into <data-dir>/images/ for the kubelet to import.
# That comes with the kubelet; until then those specs fail waiting for their pods.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

FOCUS='\[Conformance\]'
SKIP=''
SPEC_TIMEOUT=1800
PARALLEL=1
PROFILE=debug
while (($#)); do
    case "$1" in
        --focus) FOCUS="$2"; shift 2 ;;
        --skip) SKIP="$2"; shift 2 ;;
        --spec-timeout) SPEC_TIMEOUT="$2"; shift 2 ;;
        --parallel) PARALLEL="$2"; shift 2 ;;
        --release) PROFILE=release; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "conformance: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$SPEC_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --spec-timeout takes seconds" >&2; exit 2; }
[[ "$PARALLEL" =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --parallel takes a positive number" >&2; exit 2; }

source scripts/setup.sh
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "conformance: Go is required (/usr/local/go/bin/go)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "conformance: python3 is required" >&2; exit 1; }

DIR="${KEELSON_CONFORMANCE_DIR:-$HOME/.cache/keelson/conformance}"
mkdir -p "$DIR"
E2E="$DIR/e2e.test"
KUBECTL="$DIR/kubectl"

# --- upstream's binaries, from conformance/go.mod --------------------------------------
k8s_version=$(cd conformance && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
stale() { [ ! -x "$1" ] || [ conformance/go.mod -nt "$1" ] || [ conformance/go.sum -nt "$1" ]; }
if stale "$E2E" || stale "$KUBECTL"; then
    echo "conformance: building e2e.test and kubectl $k8s_version into $DIR (first time: many minutes)" >&2
    # The version upstream's release build stamps in, so both report what they are.
    ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$k8s_version" | cut -d. -f1 | tr -d v)"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    (cd conformance && nice -n 19 "$GO" test -c -vet=off -ldflags "$ldflags" -o "$E2E.new" k8s.io/kubernetes/test/e2e \
        && nice -n 19 "$GO" build -ldflags "$ldflags" -o "$KUBECTL.new" k8s.io/kubernetes/cmd/kubectl)
    mv "$E2E.new" "$E2E"
    mv "$KUBECTL.new" "$KUBECTL"
fi

# --- keelson ----------------------------------------------------------------------------
if [ "$PROFILE" = release ]; then
    nice -n 19 cargo build --release --locked -p keelson >&2
else
    nice -n 19 cargo build --locked -p keelson >&2
fi
KEELSON="$CARGO_TARGET_DIR/$PROFILE/keelson"

RESULTS="$DIR/results/conformance-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS/specs"
work=$(mktemp -d)
mkdir -p "$work/running"
server_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Best effort from here on: a spec that ended meanwhile must not stop the cleanup.
    set +e
    # Each running spec's `timeout`, which passes the signal on to its e2e.test (and
    # kills it 30 s later if it is still there).
    local f
    for f in "$work"/running/*; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
        wait "$server_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    [ -f "$work/data/logs/audit.log" ] && gzip -c "$work/data/logs/audit.log" > "$RESULTS/audit.log.gz"
    rm -rf "$work"
    echo "conformance: results in $RESULTS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the server -------------------------------------------------------------------------
"$KEELSON" server --data-dir "$work/data" --https-listen-port 0 --bind-address 127.0.0.1 \
    2> "$RESULTS/server.log" &
server_pid=$!
kubeconfig="$work/data/admin.kubeconfig"
for _ in $(seq 1 300); do
    grep -q 'ready: kubectl' "$RESULTS/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q 'ready: kubectl' "$RESULTS/server.log" \
    || { echo "conformance: the server did not start" >&2; tail -20 "$RESULTS/server.log" >&2; exit 1; }
k() { "$KUBECTL" --kubeconfig "$kubeconfig" "$@"; }
for _ in $(seq 1 100); do
    k get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.1
done
server_version=$(k version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
echo "conformance: keelson $server_version at $(grep -o 'server=https://[0-9.:]*' "$RESULTS/server.log" | head -1 | cut -d= -f2)" >&2

E2E_FLAGS=(
    --kubeconfig="$kubeconfig"
    --provider=skeleton
    --kubectl-path="$KUBECTL"
    --disable-log-dump
    --ginkgo.no-color
    --ginkgo.v
    --ginkgo.timeout="${SPEC_TIMEOUT}s"
)
# Nodes: see the header. A kubelet registers its node within seconds of the start.
nodes=0
for _ in $(seq 1 20); do
    nodes=$(k get nodes -o name 2>/dev/null | wc -l)
    [ "$nodes" -gt 0 ] && break
    sleep 0.5
done
if [ "$nodes" -eq 0 ]; then
    echo "conformance: the cluster has no node: running with --allowed-not-ready-nodes=-1 --num-nodes=1" >&2
    E2E_FLAGS+=(--allowed-not-ready-nodes=-1 --num-nodes=1)
fi

# --- the specs --------------------------------------------------------------------------
skip_args=()
[ -n "$SKIP" ] && skip_args=(--ginkgo.skip="$SKIP")
"$E2E" "${E2E_FLAGS[@]}" --ginkgo.dry-run --ginkgo.focus="$FOCUS" "${skip_args[@]}" \
    --ginkgo.json-report="$work/dry-run.json" > "$work/dry-run.log" 2>&1 \
    || { echo "conformance: e2e.test --ginkgo.dry-run failed" >&2; tail -20 "$work/dry-run.log" >&2; exit 1; }
# One line a spec: its full text; [Serial] ones last. Ginkgo matches --ginkgo.focus
# against the suite's description, a space and the spec's text.
python3 - "$work/dry-run.json" "$work/suite.txt" > "$RESULTS/specs.txt" <<'PY'
import json, sys
specs = []
for suite in json.load(open(sys.argv[1])):
    open(sys.argv[2], "w").write(suite["SuiteDescription"])
    for s in suite.get("SpecReports") or []:
        if s.get("LeafNodeType") != "It" or s.get("State") != "passed":
            continue  # suite setup nodes, and specs the focus and skip leave out
        specs.append(" ".join(list(s.get("ContainerHierarchyTexts") or []) + [s["LeafNodeText"]]))
specs.sort(key=lambda t: "[Serial]" in t)
print("\n".join(specs))
PY
total=$(grep -c . "$RESULTS/specs.txt" || true)
[ "$total" -gt 0 ] || { echo "conformance: no spec matches --focus '$FOCUS'${SKIP:+ --skip '$SKIP'}" >&2; exit 1; }
echo "conformance: specs: $total, each bounded at ${SPEC_TIMEOUT}s, $PARALLEL at a time; results in $RESULTS" >&2

# Runs spec number $1 (a line of specs.txt) alone: the suite's description and the
# spec's text, as an anchored regex.
# $work/running/$1 exists while it runs and holds its `timeout`'s pid.
run_spec() {
    local i=$1 text regex pid state
    text=$(sed -n "${i}p" "$RESULTS/specs.txt")
    regex="^$(printf '%s %s' "$(cat "$work/suite.txt")" "$text" | sed 's/[][\\.*+?(){}|^$]/\\&/g')\$"
    timeout --kill-after=30s $((SPEC_TIMEOUT + 120)) \
        "$E2E" "${E2E_FLAGS[@]}" --ginkgo.focus="$regex" \
        --ginkgo.junit-report="$work/junit-$i.xml" > "$RESULTS/specs/$i.log" 2>&1 &
    pid=$!
    echo "$pid" > "$work/running/$i"
    wait "$pid" || true
    state=$(python3 "$work/report.py" extract "$RESULTS" "$i" "$work/junit-$i.xml")
    rm -f "$work/junit-$i.xml"
    printf '[%d/%d] %s %s\n' "$i" "$total" "$state" "$text" >&2
    rm -f "$work/running/$i"
}
server_alive() {
    kill -0 "$server_pid" 2>/dev/null && return
    echo "conformance: the server stopped; the remaining specs are not run (see server.log)" >&2
    return 1
}

# The JUnit reports: `extract RESULTS I JUNIT` keeps, of e2e.test's report (every spec
# of the suite, all but one skipped), spec I's testcase in specs/I.xml and prints its
# outcome; `summary RESULTS SECONDS VERSION E2E_VERSION` merges them into junit.xml and
# prints the summary.
cat > "$work/report.py" <<'PY'
import os, re, sys, xml.etree.ElementTree as ET

def spec_case(path, i, text):
    """Spec i's testcase: its [It], or the failed suite setup that kept it from running."""
    own, setup = None, None
    try:
        for c in ET.parse(path).iter("testcase"):
            name = c.get("name", "")
            if name == "[It] " + text or name.startswith("[It] " + text + " ["):
                own = c
            elif not name.startswith("[It] ") and c.get("status") not in ("passed", "skipped"):
                setup = c
    except (OSError, ET.ParseError):
        pass
    if own is not None and (own.get("status") != "skipped" or setup is None):
        return own
    if setup is not None:
        return setup
    case = ET.Element("testcase", name="[It] " + text, status="no report", time="0")
    ET.SubElement(case, "error", type="no report",
                  message=f"e2e.test wrote no report for this spec: see specs/{i}.log")
    return case

def outcome(case):
    status = case.get("status")
    if status == "skipped":
        return "skipped", (case.find("skipped").get("message") if case.find("skipped") is not None else "")
    if status == "passed":
        return "passed", ""
    detail = case.find("failure") if case.find("failure") is not None else case.find("error")
    message = (detail.get("message") or "") if detail is not None else ""
    if not case.get("name", "").startswith("[It] "):
        message = f"{case.get('name')} failed: {message}"
    return status, message

def last_step(log):
    """What a timed-out spec was doing: its last step before the bound."""
    try:
        text = open(log, errors="replace").read().split("[TIMEDOUT]")[0]
    except OSError:
        return ""
    steps = re.findall(r"STEP: (.*?) @ \d", text)
    return f" (last step: {steps[-1]})" if steps else ""

results = sys.argv[2]
texts = open(os.path.join(results, "specs.txt")).read().splitlines()
if sys.argv[1] == "extract":
    i = int(sys.argv[3])
    case = spec_case(sys.argv[4], i, texts[i - 1])
    ET.ElementTree(case).write(os.path.join(results, "specs", f"{i}.xml"), encoding="unicode")
    print(outcome(case)[0])
    sys.exit(0)
elapsed, server_version, k8s_version = int(sys.argv[3]), sys.argv[4], sys.argv[5]
cases, passed, failed, skipped = [], 0, [], 0
for i, text in enumerate(texts, 1):
    case = spec_case(os.path.join(results, "specs", f"{i}.xml"), i, text)
    status, message = outcome(case)
    case.set("name", "[It] " + text)
    if status == "passed":
        passed += 1
    elif status == "skipped":
        skipped += 1
    else:
        # The message on one line: upstream's often put the server's answer on the next.
        brief = " ".join(message.split())
        if status == "timedout":
            brief += last_step(os.path.join(results, "specs", f"{i}.log"))
        failed.append((i, text, status, brief[:400] + ("…" if len(brief) > 400 else "")))
    cases.append(case)
suite = ET.Element("testsuite", name="Kubernetes e2e suite", tests=str(len(cases)),
                   failures=str(len(failed)), skipped=str(skipped), time=str(elapsed))
suite.extend(cases)
root = ET.Element("testsuites", tests=str(len(cases)), failures=str(len(failed)), time=str(elapsed))
root.append(suite)
ET.ElementTree(root).write(os.path.join(results, "junit.xml"), encoding="unicode", xml_declaration=True)
print(f"keelson {server_version}, e2e.test {k8s_version}: {len(texts)} specs in {elapsed // 60}m{elapsed % 60:02d}s")
print(f"{passed} passed, {len(failed)} failed, {skipped} skipped")
if failed:
    print("failed:")
    for i, text, status, brief in failed:
        print(f"  [{i}] {text}\n      {status}: {brief}")
PY

start=$(date +%s)
serial_from=$(grep -n '\[Serial\]' "$RESULTS/specs.txt" | head -1 | cut -d: -f1 || true)
parallel_end=$(( ${serial_from:-$((total + 1))} - 1 ))
for ((i = 1; i <= parallel_end; i++)); do
    while (($(ls "$work/running" | wc -l) >= PARALLEL)); do sleep 0.2; done
    server_alive || break
    : > "$work/running/$i"
    run_spec "$i" &
done
# Everything else has finished before the [Serial] specs start.
while (($(ls "$work/running" | wc -l) > 0)); do sleep 0.2; done
for ((i = parallel_end + 1; i <= total; i++)); do
    server_alive || break
    run_spec "$i"
done
elapsed=$(( $(date +%s) - start ))

# --- the report -------------------------------------------------------------------------
for ((i = 1; i <= total; i++)); do
    printf '===== [%d/%d] %s\n' "$i" "$total" "$(sed -n "${i}p" "$RESULTS/specs.txt")"
    cat "$RESULTS/specs/$i.log" 2>/dev/null || echo "(no output)"
done > "$RESULTS/e2e.log"
python3 "$work/report.py" summary "$RESULTS" "$elapsed" "$server_version" "$k8s_version" | tee "$RESULTS/summary.txt"

#!/usr/bin/env bash
# Upstream's scheduler_perf at the Kubernetes release Keelson serves, on this machine,
# for a side-by-side with `keelson bench scheduler` (issue [scheduler]). Not part of CI.
#
#   scripts/scheduler-perf-upstream.sh [WORKLOAD ...]
#
# WORKLOAD is a benchmark path below BenchmarkPerfScheduling, e.g.
# SchedulingBasic/5000Nodes_10000Pods [default: the five Keelson's bench runs:
# SchedulingBasic/5000Nodes_10000Pods, SchedulingPodAntiAffinity/5000Nodes_2000Pods,
# TopologySpreading/5000Nodes_5000Pods, SchedulingNodeAffinity/5000Nodes_10000Pods,
# PreemptionBasic/1000Nodes].
#
# Builds k8s.io/kubernetes/test/integration/scheduler_perf/… from the module proxy
# (nothing of it is in this repository) with `go test -c`, in a copy of conformance/'s
# Go module under $KEELSON_SCHEDULER_PERF_DIR (default ~/.cache/keelson/scheduler-perf),
# and runs its benchmark with the etcd that release uses (server v3.6, built here from the
# module proxy into $DIR/bin/etcd, first in PATH: the integration framework starts
# etcd itself on a unix socket, which Debian's etcd 3.4 refuses). Upstream's scheduler
# and API server run in the test process, as scheduler_perf always runs them. Results:
# the benchmark's JSON data items (SchedulingThroughput: Average, Perc50, Perc99 pods/s)
# in $KEELSON_SCHEDULER_PERF_DIR/results/<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DIR=${KEELSON_SCHEDULER_PERF_DIR:-$HOME/.cache/keelson/scheduler-perf}
command -v go >/dev/null || { echo "go is needed" >&2; exit 1; }
if (($# == 0)); then
    set -- SchedulingBasic/5000Nodes_10000Pods SchedulingPodAntiAffinity/5000Nodes_2000Pods \
        TopologySpreading/5000Nodes_5000Pods SchedulingNodeAffinity/5000Nodes_10000Pods \
        PreemptionBasic/1000Nodes
fi
mkdir -p "$DIR/module"
cp "$REPO/conformance/go.mod" "$REPO/conformance/go.sum" "$REPO/conformance/tools.go" "$DIR/module/"
RESULTS="$DIR/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
package_of() {
    case "$1" in
        SchedulingPodAntiAffinity/* | SchedulingNodeAffinity/*) echo affinity ;;
        TopologySpreading/*) echo topology_spreading ;;
        *) echo misc ;;
    esac
}
if [[ ! -x $DIR/bin/etcd ]]; then
    echo "scheduler_perf: building etcd" >&2
    mkdir -p "$DIR/module/etcd"
    # The etcd binary's whole main, against the server module k8s.io/kubernetes pins.
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$DIR/module/etcd/main.go"
    (cd "$DIR/module" && go build -mod=mod -o "$DIR/bin/etcd" ./etcd)
fi
export PATH=$DIR/bin:$PATH
cd "$DIR/module"
for workload in "$@"; do
    pkg=$(package_of "$workload")
    bin="$DIR/scheduler_perf_$pkg.test"
    if [[ ! -x $bin ]]; then
        echo "scheduler_perf: building $pkg" >&2
        # -mod=mod: the test's own dependencies join this copy's go.sum, not the repo's.
        go test -mod=mod -c -o "$bin" "k8s.io/kubernetes/test/integration/scheduler_perf/$pkg"
    fi
    echo "scheduler_perf: $workload" >&2
    # The test resolves its templates relative to the package directory.
    src=$(go list -mod=mod -f '{{.Dir}}' "k8s.io/kubernetes/test/integration/scheduler_perf/$pkg")
    (cd "$src" && "$bin" -test.run='^$' -test.benchtime=1ns -test.timeout=2h \
        -test.bench="BenchmarkPerfScheduling/$workload\$" \
        -perf-scheduling-label-filter=performance \
        -data-items-dir="$RESULTS") 2>&1 | tee "$RESULTS/$(echo "$workload" | tr / _).log" |
        grep -E '^(Benchmark|ok|FAIL|---|PASS)' || true
done
echo "results: $RESULTS" >&2
# Each data item lists its figures, then its labels (Metric, Name).
grep -h -B12 -A2 '"Metric": "SchedulingThroughput"' "$RESULTS"/*.json 2>/dev/null |
    grep -E '"(Average|Perc50|Perc99|Name)"' || true

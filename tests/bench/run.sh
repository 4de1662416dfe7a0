#!/bin/sh
# `make bench`: end-to-end and component benchmarks (see tests/bench/run.py
# and tests/BENCHMARKS.md). Prints tables; never part of `make test`.
# BENCH_OUT=FILE also writes the tables as Markdown; BENCH_RUNS, BENCH_SECS,
# BENCH_SIZES, BENCH_MODES, BENCH_CLIENTS narrow or widen the run.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export BUILD
for t in broker worker bench_server ref_client bench_ring bench_ws; do
    [ -x "$BUILD/$t" ] || { echo "bench: $BUILD/$t missing (run make first)" >&2; exit 1; }
done
# Many idle connections need descriptors (bench_spawn raises its own limit too).
ulimit -n 65536 2>/dev/null || true
exec /usr/bin/python3 tests/bench/run.py

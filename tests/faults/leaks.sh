#!/bin/sh
# Leak check: runs the integration tests and the hostile-server tests with the
# ASan + UBSan build (LeakSanitizer on) and fails on any sanitizer report from
# the broker or the C demo server. Every report goes to a file (log_path), so
# none hides in a server's stderr; a leak also makes the broker exit non-zero,
# which the suites count as a failure. Workers run with detect_leaks=0 (see
# worker/main.c: LeakSanitizer's exit scan needs system calls seccomp kills);
# a sanitizer report inside a worker ends it by SIGSYS, also a failure.
#
# Usage: tests/faults/leaks.sh (BUILD defaults to build/asan; build it with
# `make asan` or the same make line). Prints `N passed, N failed`; about 1-2
# minutes.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/asan}
export BUILD
if [ ! -x "$BUILD/broker" ]; then
    echo "no $BUILD/broker: build the ASan tree first (make asan)"
    echo "0 passed, 1 failed"
    exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM HUP
ASAN_OPTIONS="detect_leaks=1:log_path=$dir/san:abort_on_error=0"
UBSAN_OPTIONS="print_stacktrace=1:log_path=$dir/san"
export ASAN_OPTIONS UBSAN_OPTIONS

passed=0
failed=0
for suite in tests/integration/run.sh tests/faults/run.sh; do
    [ -x "$suite" ] || continue
    "$suite" > "$dir/out" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$dir/out" | tail -n 1)
    echo "$suite under $BUILD: ${line:-no summary} (exit $rc)"
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
    else
        grep -E 'not ok|failure|Sanitizer' "$dir/out" | head -n 20
        failed=$((failed + 1))
    fi
done

reports=0
for f in "$dir"/san.*; do
    [ -f "$f" ] || continue
    if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error' "$f"; then
        reports=$((reports + 1))
        echo "sanitizer report $(basename "$f"):"
        head -n 40 "$f"
    fi
done
if [ "$reports" = 0 ]; then
    echo "ok - no leak or sanitizer report from any broker or demo server"
    passed=$((passed + 1))
else
    echo "not ok - $reports sanitizer report(s)"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

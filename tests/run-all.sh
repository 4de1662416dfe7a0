#!/bin/sh
# Runs every test suite and prints one combined `N passed, N failed` line at
# the end: C unit tests (CUnit), Lua runtime tests, the test peers' smoke
# check, and the integration tests through the real broker and workers.
# BUILD selects the build directory (build, build/asan, ...).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
passed=0
failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# count NAME FILE: adds the suite's counts to the totals. A suite that ran
# no test or printed no summary counts as one failure.
count() {
    name=$1 file=$2 rc=$3
    line=$(grep -E '^[[:space:]]*tests[[:space:]]+[0-9]+' "$file" | tail -n 1)
    if [ -n "$line" ]; then # CUnit run summary: tests Total Ran Passed Failed Inactive
        p=$(echo "$line" | awk '{print $4}')
        f=$(echo "$line" | awk '{print $5}')
    else
        line=$(grep -E '^[^ ]*:? ?[0-9]+ passed, [0-9]+ failed' "$file" | tail -n 1)
        p=$(echo "$line" | grep -oE '[0-9]+ passed' | tail -n 1 | cut -d' ' -f1)
        f=$(echo "$line" | grep -oE '[0-9]+ failed' | tail -n 1 | cut -d' ' -f1)
    fi
    if [ -z "${p:-}" ] || [ -z "${f:-}" ]; then
        echo "== $name: no summary (exit $rc): counted as 1 failure"
        tail -n 20 "$file"
        p=0 f=1
    elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "== $name: exit status $rc with no failed test: counted as 1 failure"
        f=1
    fi
    echo "== $name: $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
}

suite() {
    name=$1
    shift
    echo "== $name: $*"
    "$@" > "$log/$name" 2>&1
    rc=$?
    cat "$log/$name"
    count "$name" "$log/$name" "$rc"
}

suite unit "$BUILD/unit_tests"
[ -x tests/run-lua.sh ] && suite lua tests/run-lua.sh
[ -f tests/peers/smoke.py ] && suite peers /usr/bin/python3 tests/peers/smoke.py
[ -x tests/integration/run.sh ] && suite integration tests/integration/run.sh
[ -x tests/integration/broker_runs.sh ] && suite broker_runs tests/integration/broker_runs.sh
[ -x tests/operators/run.sh ] && suite operators tests/operators/run.sh
[ -x tests/conformance/run.sh ] && suite conformance tests/conformance/run.sh
[ -x tests/sandbox/run.sh ] && suite sandbox tests/sandbox/run.sh
[ -x tests/hostile/run.sh ] && suite hostile tests/hostile/run.sh
[ -x tests/faults/run.sh ] && suite faults tests/faults/run.sh
[ -x tests/soak/run.sh ] && suite soak tests/soak/run.sh
[ -x tests/fuzz/run.sh ] && suite fuzz env FUZZ_SECONDS=${FUZZ_SECONDS:-10} tests/fuzz/run.sh

echo
echo "total: $passed passed, $failed failed"
[ "$failed" = 0 ]

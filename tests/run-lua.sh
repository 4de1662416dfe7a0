#!/bin/sh
# Runs the Lua runtime tests without a broker, with $BUILD/luarun (default
# build/luarun):
#  - every tests/lua/test_*.lua in test mode (files whose first 5 lines say
#    "luarun: skip" need a broker and are left to the integration tests);
#  - the expect-mode cases below: scripts in tests/lua/fatal/ that must end
#    the run with a given error (memory cap, CPU budget, deadlock, ...).
# Prints every case and, last, one combined `N passed, N failed` line; exits
# non-zero when anything failed.
set -u
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
cd "$(dirname "$0")/.." || exit 1
LUARUN=$BUILD/luarun
LUA=tests/lua
FATAL=$LUA/fatal

if [ ! -x "$LUARUN" ]; then
    echo "run-lua: $LUARUN not built"
    echo "0 passed, 1 failed"
    exit 1
fi

passed=0
failed=0

# run ARGS...: runs luarun, echoes its cases and adds its summary to the totals.
run() {
    out=$("$LUARUN" "$@")
    rc=$?
    printf '%s\n' "$out" | grep -Ev '^[0-9]+ passed, [0-9]+ failed$'
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "not ok - luarun $*: no summary (exit status $rc)"
        failed=$((failed + 1))
        return
    fi
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - luarun $*: exit status $rc"
        failed=$((failed + 1))
    fi
}

# expect REGEX [luarun options] SCRIPT...: the run must end with that error.
expect() {
    pattern=$1
    shift
    run --expect-error "$pattern" "$@"
}

tests=""
for f in "$LUA"/test_*.lua; do
    [ -e "$f" ] || continue
    if head -n 5 "$f" | grep -q 'luarun: skip'; then
        continue
    fi
    tests="$tests $f"
done
# shellcheck disable=SC2086 # word splitting wanted: file names have no spaces
[ -n "$tests" ] && run $tests

MEM=33554432
MEMRE="memory limit of $MEM bytes exceeded"
expect "$MEMRE" --mem $MEM "$FATAL/mem_string_rep.lua"
expect "$MEMRE" --mem $MEM "$FATAL/mem_table_pcall.lua"
expect "$MEMRE" --mem $MEM "$FATAL/mem_pcall_loop.lua"
expect "$MEMRE" --mem $MEM "$FATAL/mem_coroutine.lua"
expect "$MEMRE" --mem $MEM "$FATAL/mem_task.lua"
expect "$MEMRE" --mem $MEM "$FATAL/mem_xpcall_handler.lua"

CPURE="CPU time limit of 300 ms exceeded"
expect "$CPURE" --cpu 300 "$FATAL/cpu_loop.lua"
expect "$CPURE" --cpu 300 "$FATAL/cpu_pcall.lua"
expect "$CPURE" --cpu 300 "$FATAL/cpu_coroutine.lua"
expect "$CPURE" --cpu 300 "$FATAL/cpu_task.lua"
expect "$CPURE" --cpu 300 "$FATAL/cpu_load_reader.lua"
expect "$CPURE" --cpu 300 "$FATAL/cpu_close_handler.lua"

expect "deadlock: all tasks are blocked" "$FATAL/deadlock.lua"
expect "deadlock: all tasks are blocked" "$FATAL/deadlock_select.lua"
expect "error_main.lua:2: boom from inner.*stack traceback" "$FATAL/error_main.lua"
expect "syntax_error.lua:2: unexpected symbol" "$FATAL/syntax_error.lua"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

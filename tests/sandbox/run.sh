#!/bin/sh
# Sandbox tests through the real broker and the real (or a hostile) worker:
#
#  1. the Lua escape corpus: every tests/sandbox/escape_*.lua runs with
#     `broker run`; header comments say what must happen:
#        -- args: OPTIONS      extra `broker run` options (default: none)
#        -- exit: N            the broker's exit status (required)
#        -- stderr: REGEX      must match the broker's stderr (grep -E), repeatable
#        -- stdout: REGEX      must match the script output, repeatable
#        -- absent: REGEX      must match neither, repeatable
#     Output containing UNREACHABLE or a raw ESC byte always fails.
#     Meanwhile a benign "survivor" script runs in another broker and must
#     keep running;
#  2. process hygiene read from /proc while a worker sleeps (NoNewPrivs,
#     Seccomp, capabilities, not dumpable, descriptors, rlimits, namespaces);
#  3. the hostile worker (build/evil_worker) through the real broker: each
#     forbidden system call must end as "seccomp violation" (exit 4), the
#     errno-mapped ones as a script error, the allowed ones must work;
#  4. start-up: a worker that never sends READY is killed ("not ready in
#     time"); a worker whose seccomp filter cannot be loaded runs no script;
#  5. a worker that dies while the broker is stopped still has its last
#     output and EXIT record read and its end classified correctly.
#
# Usage: tests/sandbox/run.sh [-v] [NAME-FILTER]   (BUILD=dir, default build)
# Prints "ok"/"not ok" per case and last `N passed, N failed`; exits non-zero
# on a failure. Everything started here ends by itself (budgets, timeout).
set -u
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
cd "$(dirname "$0")/../.." || exit 1
VERBOSE=0
if [ "${1:-}" = "-v" ]; then
    VERBOSE=1
    shift
fi
FILTER=${1:-}
BROKER=$BUILD/broker
WORKER=$BUILD/worker
EVIL=$BUILD/evil_worker
DIR=tests/sandbox
ESC=$(printf '\033')

passed=0
failed=0
for f in "$BROKER" "$WORKER" "$EVIL"; do
    if [ ! -x "$f" ]; then
        echo "sandbox: $f not built"
        echo "0 passed, 1 failed"
        exit 1
    fi
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sbxtest.XXXXXX") || exit 1
SURVIVOR_PID=
cleanup() {
    if [ -n "$SURVIVOR_PID" ]; then kill -TERM "$SURVIVOR_PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
    passed=$((passed + 1))
    echo "ok - $1"
}
# not_ok NAME WHY [FILE...]: reports a failure and shows the outputs.
not_ok() {
    failed=$((failed + 1))
    echo "not ok - $1: $2"
    shift 2
    for f in "$@"; do
        [ -f "$f" ] && sed 's/^/    | /' "$f" | head -n 30
    done
}
selected() {
    [ -z "$FILTER" ] && return 0
    case $1 in *"$FILTER"*) return 0 ;; esac
    return 1
}
# run_broker OUT ERR ARGS...: broker run under a hard outer time limit.
run_broker() {
    out=$1
    err=$2
    shift 2
    timeout -k 5 60 "$BROKER" run "$@" >"$out" 2>"$err"
}

# ---- 1. Lua escape corpus ----

# A benign worker in another broker that must survive everything below.
cat >"$TMP/survivor.lua" <<'EOF'
local n = 0
while true do
    time.sleep("100ms")
    n = n + 1
    print("tick", n)
end
EOF
"$BROKER" run --wall 120000 "$TMP/survivor.lua" >"$TMP/survivor.out" 2>"$TMP/survivor.err" &
SURVIVOR_PID=$!

for script in "$DIR"/escape_*.lua; do
    name=$(basename "$script" .lua)
    selected "$name" || continue
    args=$(sed -n 's/^-- args: *//p' "$script" | head -n 1)
    want=$(sed -n 's/^-- exit: *//p' "$script" | head -n 1)
    if [ -z "$want" ]; then
        not_ok "$name" "no '-- exit: N' line"
        continue
    fi
    out=$TMP/$name.out
    err=$TMP/$name.err
    # shellcheck disable=SC2086 # args is a word list on purpose
    run_broker "$out" "$err" $args "$script"
    rc=$?
    why=
    [ "$rc" -eq "$want" ] || why="exit status $rc, expected $want"
    if [ -z "$why" ] && cat "$out" "$err" | grep -q UNREACHABLE; then
        why="reached a line it must not reach"
    fi
    if [ -z "$why" ] && cat "$out" "$err" | LC_ALL=C grep -q "$ESC"; then
        why="a raw ESC byte reached the broker's output"
    fi
    if [ -z "$why" ]; then
        while IFS= read -r re; do
            [ -z "$re" ] && continue
            grep -Eq -- "$re" "$err" || why="stderr does not match /$re/"
        done <<EOF
$(sed -n 's/^-- stderr: *//p' "$script")
EOF
    fi
    if [ -z "$why" ]; then
        while IFS= read -r re; do
            [ -z "$re" ] && continue
            grep -Eq -- "$re" "$out" || why="stdout does not match /$re/"
        done <<EOF
$(sed -n 's/^-- stdout: *//p' "$script")
EOF
    fi
    if [ -z "$why" ]; then
        while IFS= read -r re; do
            [ -z "$re" ] && continue
            cat "$out" "$err" | grep -Eq -- "$re" && why="output matches /$re/"
        done <<EOF
$(sed -n 's/^-- absent: *//p' "$script")
EOF
    fi
    # The broker itself must have ended cleanly: an end line for w1.
    if [ -z "$why" ] && [ "$rc" -ne 0 ] && ! grep -q '^broker: w1 ended: ' "$err"; then
        why="no 'w1 ended' line from the broker"
    fi
    if [ -z "$why" ]; then
        how=$(grep -o 'ended: [^(:]*' "$err" | head -n 1 | sed 's/ *$//')
        ok "escape: $name (exit $rc${how:+, $how})"
        [ "$VERBOSE" -eq 1 ] && sed 's/^/    | /' "$out" "$err"
    else
        not_ok "escape: $name" "$why" "$out" "$err"
    fi
done

# The survivor kept running through all of it.
if selected survivor; then
    t1=$(grep -c tick "$TMP/survivor.out")
    sleep 0.5
    t2=$(grep -c tick "$TMP/survivor.out")
    if kill -0 "$SURVIVOR_PID" 2>/dev/null && [ "$t2" -gt "$t1" ] && [ "$t1" -gt 0 ]; then
        ok "survivor: a benign worker kept running meanwhile ($t2 ticks)"
    else
        not_ok "survivor" "the benign worker stopped (ticks $t1 then $t2)" \
            "$TMP/survivor.out" "$TMP/survivor.err"
    fi
fi
kill -TERM "$SURVIVOR_PID" 2>/dev/null
wait "$SURVIVOR_PID" 2>/dev/null
SURVIVOR_PID=

# ---- 2. process hygiene of a running worker ----

# hex_zero VALUE: true when a /proc hex mask is all zeros.
hex_zero() {
    case $1 in *[!0]*) return 1 ;; esac
    return 0
}

if selected hygiene; then
    cat >"$TMP/hygiene.lua" <<'EOF'
print("sleeping")
time.sleep("3s")
print("done")
EOF
    "$BROKER" run --verbose --wall 20000 --cpu 5000 "$TMP/hygiene.lua" >"$TMP/hygiene.out" \
        2>"$TMP/hygiene.err" &
    bpid=$!
    wpid=
    i=0
    while [ $i -lt 50 ]; do
        # The worker is the broker's only child; wait until it runs the script.
        wpid=$(cat "/proc/$bpid/task/$bpid/children" 2>/dev/null | tr -d ' ')
        [ -n "$wpid" ] && grep -q sleeping "$TMP/hygiene.out" && break
        sleep 0.1
        i=$((i + 1))
    done
    st=/proc/$wpid/status
    if [ -z "$wpid" ] || [ ! -r "$st" ]; then
        not_ok "hygiene" "no running worker found" "$TMP/hygiene.out" "$TMP/hygiene.err"
    else
        field() { sed -n "s/^$1:[[:space:]]*//p" "$st" | head -n 1; }
        [ "$(field NoNewPrivs)" = 1 ] && ok "hygiene: NoNewPrivs 1" ||
            not_ok "hygiene: NoNewPrivs" "is '$(field NoNewPrivs)'"
        [ "$(field Seccomp)" = 2 ] && ok "hygiene: Seccomp 2 (filter mode)" ||
            not_ok "hygiene: Seccomp" "is '$(field Seccomp)'"
        caps_ok=1
        for c in CapInh CapPrm CapEff CapAmb; do
            v=$(field $c)
            [ -z "$v" ] && [ $c = CapAmb ] && continue
            hex_zero "$v" || caps_ok=0
        done
        [ $caps_ok -eq 1 ] && ok "hygiene: no capabilities (CapInh/Prm/Eff/Amb all zero)" ||
            not_ok "hygiene: capabilities" "$(grep ^Cap "$st" | tr '\n' ' ')"
        uid=$(field Uid | awk '{print $2}')
        if [ "$uid" = 0 ]; then
            not_ok "hygiene: uid" "the worker runs as uid 0"
        else
            ok "hygiene: not uid 0 (effective uid $uid)"
        fi
        # Not dumpable: the kernel makes /proc/PID root-owned (while the
        # worker is not uid 0), and same-uid processes cannot read its memory.
        owner=$(stat -c %u "/proc/$wpid/status")
        if [ "$owner" = 0 ] && [ "$uid" != 0 ]; then
            ok "hygiene: not dumpable (/proc/$wpid owned by root, worker uid $uid)"
        else
            not_ok "hygiene: dumpable" "/proc/$wpid/status owned by uid $owner, worker uid $uid"
        fi
        if [ "$(id -u)" != 0 ]; then
            if cat "/proc/$wpid/environ" >/dev/null 2>&1; then
                not_ok "hygiene: environ" "a same-uid process can read /proc/$wpid/environ"
            else
                ok "hygiene: /proc/$wpid/environ is not readable for the broker's uid"
            fi
        fi
        # Descriptors: exactly the two eventfds as 5 and 6 (needs access to
        # /proc/PID/fd, i.e. root, because the worker is not dumpable).
        if fds=$(ls "/proc/$wpid/fd" 2>/dev/null); then
            fds=$(echo $fds)
            kinds=$(for fd in $fds; do readlink "/proc/$wpid/fd/$fd"; done | sort -u | tr '\n' ' ')
            if [ "$fds" = "5 6" ] && [ "$kinds" = "anon_inode:[eventfd] " ]; then
                ok "hygiene: descriptors exactly 5 and 6, both eventfds"
            else
                not_ok "hygiene: descriptors" "fds '$fds' ($kinds)"
            fi
        else
            echo "skip - hygiene: descriptors (/proc/$wpid/fd needs root to read)"
        fi
        lim=/proc/$wpid/limits
        lim_ok=1
        for l in "Max processes +0 +0" "Max file size +0 +0" "Max core file size +0 +0" \
            "Max open files +2 +2" "Max cpu time +6 +7"; do
            grep -Eq "^$l " "$lim" || lim_ok=0
        done
        # RLIMIT_AS is left out in ASan builds; the ready line says "as=" when set.
        if grep -q '; as=[0-9]' "$TMP/hygiene.err"; then
            grep -Eq '^Max address space +[0-9]+ +[0-9]+ ' "$lim" || lim_ok=0
        fi
        [ $lim_ok -eq 1 ] && ok "hygiene: rlimits nproc 0, fsize 0, core 0, nofile 2, cpu, as" ||
            not_ok "hygiene: rlimits" "unexpected limits" "$lim"
        # Namespaces: the ready line says whether they are on; if they are,
        # the worker's namespace links must differ from ours.
        if grep -q 'namespaces: user,net,ipc,uts,mnt' "$TMP/hygiene.err"; then
            if readlink "/proc/$wpid/ns/net" >/dev/null 2>&1; then
                same=
                for ns in user net ipc uts mnt; do
                    a=$(readlink "/proc/$wpid/ns/$ns")
                    [ "$a" = "$(readlink /proc/self/ns/$ns)" ] && same="$same $ns"
                done
                [ -z "$same" ] && ok "hygiene: own user/net/ipc/uts/mnt namespaces" ||
                    not_ok "hygiene: namespaces" "shared with the test:$same"
            else
                echo "skip - hygiene: namespace links (/proc/$wpid/ns needs root to read)"
            fi
        elif grep -q 'namespaces: unavailable (' "$TMP/hygiene.err"; then
            echo "skip - hygiene: namespaces unavailable here: $(grep -o 'namespaces: unavailable ([^)]*)' "$TMP/hygiene.err")"
        else
            not_ok "hygiene: namespaces" "the ready line gives no namespace verdict" "$TMP/hygiene.err"
        fi
        # PID namespace: when the broker could make one, the worker is its
        # init (pid 1 inside) and its pid namespace differs from ours.
        if grep -q 'pid namespace (init' "$TMP/hygiene.err"; then
            nspid=$(awk '/^NSpid:/ {print $2 "/" $NF}' "/proc/$wpid/status")
            if [ "${nspid#*/}" = 1 ] &&
                [ "$(readlink /proc/$wpid/ns/pid)" != "$(readlink /proc/self/ns/pid)" ]; then
                ok "hygiene: own PID namespace, pid 1 inside (NSpid $nspid)"
            else
                not_ok "hygiene: PID namespace" "NSpid '$nspid'"
            fi
        else
            echo "skip - hygiene: no PID namespace (the broker may not create one here)"
        fi
    fi
    wait "$bpid"
    rc=$?
    [ "$rc" -eq 0 ] && grep -q 'done' "$TMP/hygiene.out" && ok "hygiene: the worker finished normally" ||
        not_ok "hygiene: end" "exit status $rc" "$TMP/hygiene.out" "$TMP/hygiene.err"
fi

# The ready line must describe the layers, including what happened to the
# namespaces (never silently "no sandbox").
if selected ready_line; then
    echo 'print("x")' >"$TMP/ready.lua"
    run_broker "$TMP/ready.out" "$TMP/ready.err" --verbose "$TMP/ready.lua"
    line=$(grep 'w1 ready: ' "$TMP/ready.err")
    why=
    for want in 'fds closed' 'pdeathsig' 'not dumpable' 'rlimits: nproc=0' \
        'seccomp: filter active, no_new_privs, 2 fds allowed, self-probe ok'; do
        case $line in *"$want"*) ;; *) why="missing '$want'" ;; esac
    done
    # The parent check: done by the worker (getppid), or by the broker before
    # exec when the worker is the init of its own PID namespace.
    case $line in
    *'pdeathsig; parent checked'* | *'pid namespace (init; parent checked by the broker before exec)'*) ;;
    *) why="no parent check" ;;
    esac
    case $line in
    *'namespaces: user,net,ipc,uts,mnt'* | *'namespaces: unavailable ('*) ;;
    *) why="no namespace verdict" ;;
    esac
    [ -z "$why" ] && ok "ready line lists the layers" ||
        not_ok "ready line" "$why" "$TMP/ready.err"
    run_broker "$TMP/ready2.out" "$TMP/ready2.err" --verbose --no-namespaces "$TMP/ready.lua"
    grep -q 'namespaces: not requested' "$TMP/ready2.err" && grep -q 'self-probe ok' "$TMP/ready2.err" &&
        ok "ready line with --no-namespaces says so, other layers stay" ||
        not_ok "ready line --no-namespaces" "unexpected" "$TMP/ready2.err"
fi

# ---- 3. the hostile worker through the broker ----

if selected evil; then
    echo '-- evil: ok' >"$TMP/evil_ok.lua"
    run_broker "$TMP/evil.out" "$TMP/evil.err" --verbose --worker "$EVIL" "$TMP/evil_ok.lua"
    rc=$?
    if [ $rc -eq 0 ] && grep -q 'all work' "$TMP/evil.out" &&
        grep -q 'EVIL WORKER: .*self-probe ok' "$TMP/evil.err"; then
        ok "evil worker: allowed operations work in the real sandbox"
    else
        not_ok "evil worker: ok" "exit status $rc" "$TMP/evil.out" "$TMP/evil.err"
    fi
    for a in $("$EVIL" list); do
        case $a in
        open | openat) want=1 werr='errno 13' ;;
        rseq) want=1 werr='errno 38' ;;
        *) want=4 werr= ;;
        esac
        echo "-- evil: $a" >"$TMP/evil_$a.lua"
        run_broker "$TMP/evil.out" "$TMP/evil.err" --worker "$EVIL" "$TMP/evil_$a.lua"
        rc=$?
        why=
        [ $rc -eq $want ] || why="exit status $rc, expected $want"
        grep -q "attempt: $a\$" "$TMP/evil.out" || why="${why:-the attempt was not made}"
        if [ $want -eq 4 ]; then
            grep -q '^broker: w1 ended: seccomp violation (signal 31) \[security event: not restarted\]' \
                "$TMP/evil.err" || why="${why:-no 'seccomp violation' end line}"
        else
            grep -q "survived: $a failed with $werr" "$TMP/evil.out" || why="${why:-not the mapped errno}"
            grep -q '^broker: w1 ended: script error' "$TMP/evil.err" || why="${why:-no 'script error' end line}"
        fi
        grep -q HOLE "$TMP/evil.out" && why="a forbidden call succeeded"
        [ -z "$why" ] && ok "evil worker: $a -> $(grep -o 'ended: [^(]*' "$TMP/evil.err" | sed 's/ *$//')" ||
            not_ok "evil worker: $a" "$why" "$TMP/evil.out" "$TMP/evil.err"
    done
fi

# ---- 4. start-up guarantees ----

if selected startup; then
    echo 'print("SCRIPT RAN")' >"$TMP/ran.lua"
    # The real worker, but every way to load a seccomp filter fails.
    printf '#!/bin/sh\nexec "%s" --deny-seccomp "%s" "$@"\n' "$EVIL" "$WORKER" >"$TMP/deny.sh"
    chmod +x "$TMP/deny.sh"
    run_broker "$TMP/deny.out" "$TMP/deny.err" --worker "$TMP/deny.sh" "$TMP/ran.lua"
    rc=$?
    if [ $rc -eq 5 ] && ! grep -q 'SCRIPT RAN' "$TMP/deny.out" &&
        grep -q '^broker: w1 ended: crash (exit status 12): start-up failed: sandbox could not be set up' \
            "$TMP/deny.err"; then
        ok "startup: without seccomp the worker stops before READY and no script runs"
    else
        not_ok "startup: no seccomp" "exit status $rc" "$TMP/deny.out" "$TMP/deny.err"
    fi
    # Namespaces refused (as without unprivileged user namespaces): the ready
    # line must say so, and every other layer must still be on.
    printf '#!/bin/sh\nexec "%s" --deny-unshare "%s" "$@"\n' "$EVIL" "$WORKER" >"$TMP/nons.sh"
    chmod +x "$TMP/nons.sh"
    run_broker "$TMP/nons.out" "$TMP/nons.err" --verbose --worker "$TMP/nons.sh" "$TMP/ran.lua"
    rc=$?
    if [ $rc -eq 0 ] && grep -q 'SCRIPT RAN' "$TMP/nons.out" &&
        grep -q 'namespaces: unavailable (unshare: Operation not permitted), other layers only' \
            "$TMP/nons.err" &&
        grep -q 'not dumpable; rlimits: nproc=0 .*seccomp: filter active, no_new_privs, 2 fds allowed, self-probe ok' \
            "$TMP/nons.err"; then
        ok "startup: without namespaces the log says so and the other layers stay on"
    else
        not_ok "startup: no namespaces" "exit status $rc" "$TMP/nons.out" "$TMP/nons.err"
    fi
    # A worker that locks down but never sends READY.
    printf '#!/bin/sh\nexec "%s" --stall "$@"\n' "$EVIL" >"$TMP/stall.sh"
    chmod +x "$TMP/stall.sh"
    run_broker "$TMP/stall.out" "$TMP/stall.err" --worker "$TMP/stall.sh" "$TMP/ran.lua"
    rc=$?
    if [ $rc -eq 5 ] && ! grep -q 'SCRIPT RAN' "$TMP/stall.out" &&
        grep -q '^broker: w1 ended: not ready in time (signal 9)' "$TMP/stall.err"; then
        ok "startup: a worker that is not READY in time is killed"
    else
        not_ok "startup: not ready" "exit status $rc" "$TMP/stall.out" "$TMP/stall.err"
    fi
fi

# ---- 5. end classification when the broker is late ----

# The worker writes a burst of output and its EXIT record and dies while the
# broker is stopped; on resume the death and the records arrive together. The
# broker must still print every line and classify "script error", not "crash".
if selected late_broker; then
    cat >"$TMP/burst.lua" <<'EOF'
time.sleep("500ms")
for i = 1, 3000 do print("line", i) end
error("boom at the end")
EOF
    "$BROKER" run --wall 20000 "$TMP/burst.lua" >"$TMP/burst.out" 2>"$TMP/burst.err" &
    bpid=$!
    sleep 0.2
    kill -STOP "$bpid" 2>/dev/null
    sleep 1.5
    kill -CONT "$bpid" 2>/dev/null
    wait "$bpid"
    rc=$?
    n=$(grep -c '^\[w1\] line' "$TMP/burst.out")
    if [ $rc -eq 1 ] && [ "$n" -eq 3000 ] && grep -q 'boom at the end' "$TMP/burst.err" &&
        grep -q '^broker: w1 ended: script error (exit status 1)' "$TMP/burst.err"; then
        ok "late broker: output and EXIT written just before death are kept (script error)"
    else
        not_ok "late broker" "exit status $rc, $n of 3000 lines" "$TMP/burst.err"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

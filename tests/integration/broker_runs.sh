#!/bin/sh
# Integration checks that need their own broker command line or a look at
# the broker process from outside (run.sh runs every script with one set of
# options):
#  - backpressure: channel_capacity = 1, 100 000 messages of 1000 bytes from
#    a fast server while the script reads slowly; every message arrives in
#    order and the broker's peak RSS (VmHWM) stays within a bound far below
#    the 100 MB that went through it;
#  - the policy action websocket.connect denied (no --allow at all) and the
#    URL action denied, both PERMISSION_DENIED, not retryable;
#  - connections still open when the script ends are closed with 1001.
#  - a message larger than the worker's memory cap ends the run as
#    "memory cap", with the reason in the output.
# Servers: the C demo server and Node ws (when installed) for backpressure,
# the raw server for the close check. Loopback only; every process stops by
# itself. Prints `N passed, N failed` at the end.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
PY=/usr/bin/python3
# Peak RSS growth allowed for the broker during a backpressure run (KiB).
RSS_BOUND_KB=${RSS_BOUND_KB:-32768}
# Sanitizer builds keep freed memory in quarantine: no RSS bound there.
sanitized=0
if grep -q __asan_init "$BROKER" 2>/dev/null; then sanitized=1; fi
tmp=$(mktemp -d)
pids=""
passed=0
failed=0
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }

. tests/lib.sh # start NAME COMMAND...

# run_peak LOG SCRIPT BROKER-OPTIONS...: runs the script in the background,
# samples the broker's VmHWM every 50 ms; sets PEAK_KB and RC.
run_peak() {
    log=$1 script=$2
    shift 2
    timeout 120 "$BROKER" run --quiet --wall 100000 "$@" "$script" > "$log" 2>&1 &
    bpid=$!
    PEAK_KB=0
    while kill -0 "$bpid" 2>/dev/null; do
        # timeout(1) is the parent: the broker is its child
        child=$(pgrep -P "$bpid" -x broker 2>/dev/null | head -n 1)
        if [ -n "$child" ]; then
            hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$child/status" 2>/dev/null)
            if [ -n "$hwm" ] && [ "$hwm" -gt "$PEAK_KB" ]; then PEAK_KB=$hwm; fi
        fi
        sleep 0.05
    done
    wait "$bpid"
    RC=$?
}

start c "$BROKER" demo-server --port 0
if [ -d tests/peers/node_modules/ws ]; then
    start node node tests/peers/node_server.js --port 0
fi
start raw $PY tests/peers/raw_server.py --port 0

# ---- backpressure -------------------------------------------------------
cat > "$tmp/idle.lua" <<'EOF'
local c = assert(websocket.connect("@BASE@/echo", { channel_capacity = 1 }))
assert(c:send("x") and c:channel():receive().data == "x")
time.sleep("1s")
c:close()
print("IDLE OK")
EOF
cat > "$tmp/blast.lua" <<'EOF'
-- 100 000 messages of 1000 bytes; the script first sleeps so the server
-- fills every buffer on the way, then reads slowly at first.
local c = assert(websocket.connect("@BASE@/blast?n=100000&size=1000&type=binary",
    { channel_capacity = 1 }))
time.sleep("1s")
local ch, n = c:channel(), 0
while true do
    local m, ok = ch:receive()
    assert(ok, "channel closed after " .. n)
    if m.data == "END" then break end
    assert(#m.data == 1000 and m.type == "binary" and m.data:byte(1000) == 999 % 251)
    n = n + 1
    if n <= 2000 and n % 100 == 0 then time.sleep("10ms") end
end
assert(n == 100000, "got " .. n)
c:close()
print("BLAST OK " .. n)
EOF
cat > "$tmp/order.lua" <<'EOF'
-- 100 000 numbered messages, then the server's close: all in order, then the end.
local c = assert(websocket.connect("@BASE@/close?code=1000&reason=done&n=100000",
    { channel_capacity = 1 }))
local ch, n = c:channel(), 0
while true do
    local m, ok = ch:receive()
    if not ok then break end
    n = n + 1
    if m.data ~= "m" .. n then error("message " .. n .. " is " .. m.data) end
end
assert(n == 100000, "got " .. n)
local i = c:info()
assert(i.close_code == 1000 and i.close_reason == "done" and i.closed_by == "server")
print("ORDER OK " .. n)
EOF

for s in c node; do
    eval "port=\${PORT_$s:-}"
    if [ -z "$port" ]; then
        echo "skip backpressure on $s: server not running"
        continue
    fi
    allow="ws://127.0.0.1:$port/*"
    sed "s|@BASE@|ws://127.0.0.1:$port|g" "$tmp/idle.lua" > "$tmp/idle_$s.lua"
    sed "s|@BASE@|ws://127.0.0.1:$port|g" "$tmp/blast.lua" > "$tmp/blast_$s.lua"
    sed "s|@BASE@|ws://127.0.0.1:$port|g" "$tmp/order.lua" > "$tmp/order_$s.lua"
    run_peak "$tmp/idle_$s.log" "$tmp/idle_$s.lua" --allow "$allow"
    base=$PEAK_KB
    if [ "$RC" != 0 ] || ! grep -q "IDLE OK" "$tmp/idle_$s.log"; then
        cat "$tmp/idle_$s.log"
        not_ok "baseline run on $s (exit $RC)"
        continue
    fi
    start_ns=$(date +%s%N)
    run_peak "$tmp/blast_$s.log" "$tmp/blast_$s.lua" --allow "$allow"
    ms=$((($(date +%s%N) - start_ns) / 1000000))
    if [ "$RC" = 0 ] && grep -q "BLAST OK 100000" "$tmp/blast_$s.log"; then
        ok "backpressure on $s: 100000 x 1000 B with channel_capacity=1 in $ms ms"
    else
        cat "$tmp/blast_$s.log"
        not_ok "backpressure on $s: not every message arrived (exit $RC)"
    fi
    growth=$((PEAK_KB - base))
    if [ "$sanitized" = 1 ]; then
        echo "skip broker peak RSS on $s: sanitizer build (peak ${PEAK_KB} KiB)"
    elif [ "$base" -gt 0 ] && [ "$growth" -lt "$RSS_BOUND_KB" ]; then
        ok "broker peak RSS on $s: ${PEAK_KB} KiB, ${growth} KiB over the idle run (bound ${RSS_BOUND_KB})"
    else
        not_ok "broker peak RSS on $s: ${PEAK_KB} KiB, ${growth} KiB over the idle run ${base} KiB (bound ${RSS_BOUND_KB})"
    fi
    run_peak "$tmp/order_$s.log" "$tmp/order_$s.lua" --allow "$allow"
    if [ "$RC" = 0 ] && grep -q "ORDER OK 100000" "$tmp/order_$s.log"; then
        ok "100000 numbered messages in order, then the server's close, on $s"
    else
        cat "$tmp/order_$s.log"
        not_ok "ordered delivery on $s (exit $RC)"
    fi
done

# ---- policy: both actions -------------------------------------------------
cat > "$tmp/deny.lua" <<EOF
local c, err = websocket.connect("ws://127.0.0.1:${PORT_c:-1}/echo")
assert(c == nil, "connected without any --allow")
assert(err:kind() == errors.PERMISSION_DENIED and err:retryable() == false, tostring(err))
print("DENY " .. err:message())
EOF
"$BROKER" run --quiet --wall 20000 "$tmp/deny.lua" > "$tmp/deny1.log" 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -q "DENY .*websocket.connect is not allowed" "$tmp/deny1.log"; then
    ok "no rule at all: the action websocket.connect is denied"
else
    cat "$tmp/deny1.log"
    not_ok "no rule at all: websocket.connect denial (exit $rc)"
fi
"$BROKER" run --quiet --wall 20000 --allow "ws://127.0.0.1:${PORT_c:-1}/other*" \
    "$tmp/deny.lua" > "$tmp/deny2.log" 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -q "DENY .*websocket.connect.url .* is not allowed" "$tmp/deny2.log"; then
    ok "URL not matched by any rule: websocket.connect.url is denied"
else
    cat "$tmp/deny2.log"
    not_ok "URL denial (exit $rc)"
fi

# ---- a message the worker's memory cap cannot hold: the reason is logged --
# The worker ends (memory cap hit while handling the record); the line saying
# why reaches the script's output and the end is classified as the memory
# cap, not as a crash (both were lost with the link before).
if [ -n "${PORT_raw:-}" ]; then
    cat > "$tmp/capped.lua" <<EOF
local c = assert(websocket.connect("ws://127.0.0.1:$PORT_raw/big?size=12000000",
    { read_limit = 16 << 20 }))
c:channel():receive()
print("NOT REACHED")
EOF
    "$BROKER" run --wall 20000 --mem 8M --allow "ws://127.0.0.1:$PORT_raw/*" \
        "$tmp/capped.lua" > "$tmp/capped.log" 2>&1
    rc=$?
    if [ "$rc" != 0 ] && ! grep -q "NOT REACHED" "$tmp/capped.log" &&
        grep -q "broker link failed: .*(memory cap) while handling a broker record" "$tmp/capped.log" &&
        grep -q "ended: memory cap" "$tmp/capped.log"; then
        ok "a message over the worker's memory cap ends the run as 'memory cap', the reason logged"
    else
        cat "$tmp/capped.log"
        not_ok "message over the memory cap (exit $rc)"
    fi
fi

# ---- connections open at the end of the script close with 1001 ------------
if [ -n "${PORT_raw:-}" ]; then
    raw="ws://127.0.0.1:$PORT_raw"
    cat > "$tmp/leave.lua" <<EOF
local c = assert(websocket.connect("$raw/close_seen?id=atexit"))
assert(c:send("x") and c:channel():receive().data == "x")
print("LEAVING")
EOF
    cat > "$tmp/report.lua" <<EOF
local r = assert(websocket.connect("$raw/close_report?id=atexit"))
print("REPORT " .. r:channel():receive().data)
r:close()
EOF
    "$BROKER" run --quiet --wall 20000 --allow "$raw/*" "$tmp/leave.lua" > "$tmp/leave.log" 2>&1
    rc1=$?
    "$BROKER" run --quiet --wall 20000 --allow "$raw/*" "$tmp/report.lua" > "$tmp/report.log" 2>&1
    rc2=$?
    if [ "$rc1" = 0 ] && [ "$rc2" = 0 ] && grep -q "REPORT code=1001 " "$tmp/report.log"; then
        ok "a connection left open when the script ends is closed with 1001"
    else
        cat "$tmp/leave.log" "$tmp/report.log"
        not_ok "close at script end (exit $rc1/$rc2)"
    fi
else
    not_ok "raw server not running"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

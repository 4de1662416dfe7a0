#!/bin/sh
# Hostile workers against the real broker: for every misbehaviour of
# build/bad_worker (tests/tools/bad_worker.c) it runs
#   broker run --worker bad_worker SCRIPT
# with a script naming the mode, and checks that
#   - the broker kills the worker and logs the kill with the expected reason
#     ("w1 killed (protocol violation): ..."), exits with status 4 (5 for a
#     worker that never got ready: a start failure), within a
#     time bound, without a sanitizer report or a crash of its own;
#   - the connection the worker had open was closed properly: the recording
#     server (tests/hostile/ws_recorder.py) saw a close frame with code 1001
#     (or the worker's own 1000 where it had sent CLOSE first);
#   - load modes (LOG flood, a worker that stops reading, a CONNECT flood, a
#     thread flipping ring bytes, PING or empty-message floods to a server
#     that never reads) leave the broker responsive with bounded memory.
# When `broker serve` is available, one more test runs a bad worker next to a
# well-behaved one in the same broker process.
# Prints `N passed, N failed`; exit status 1 on failure.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
BAD=$BUILD/bad_worker
PY=/usr/bin/python3
tmp=$(mktemp -d)
spid=""
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    wait 2>/dev/null
    [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ ! -x "$BROKER" ] || [ ! -x "$BAD" ]; then
    echo "missing $BROKER or $BAD (make BUILD=$BUILD)"
    echo "0 passed, 1 failed"
    exit 1
fi

$PY tests/hostile/ws_recorder.py --port 0 --lifetime 600 > "$tmp/server.out" 2> "$tmp/server.err" &
spid=$!
port=""
i=0
while [ $i -lt 100 ] && [ -z "$port" ]; do
    port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/server.out" | head -n 1)
    [ -n "$port" ] || sleep 0.1
    i=$((i + 1))
done
if [ -z "$port" ]; then
    echo "recording server did not start:"
    cat "$tmp/server.err"
    echo "0 passed, 1 failed"
    exit 1
fi
BASE="ws://127.0.0.1:$port"
# Memory bound for the load modes; an ASan build keeps freed memory in
# quarantine (256 MiB by default), so its bound is larger.
RSS_LIMIT_KB=65536
grep -q -a __asan_init "$BROKER" 2>/dev/null && RSS_LIMIT_KB=655360

passed=0
failed=0
fail() {
    echo "FAIL $1: $2"
    [ -f "$tmp/$1.err" ] && sed -n 1,12p "$tmp/$1.err" | sed 's/^/    broker: /'
    [ -f "$tmp/$1.report" ] && sed 's/^/    worker: /' "$tmp/$1.report"
    failed=$((failed + 1))
}

# run_mode MODE [extra broker options]: runs the broker; sets $rc, $took.
run_mode() {
    m=$1
    shift
    echo "$m $BASE $tmp/$m.report" > "$tmp/$m.lua"
    : > "$tmp/$m.report"
    t0=$(date +%s)
    out=$tmp/$m.out
    case $m in log_flood | flip) out=/dev/null ;; esac # hundreds of MB of output
    timeout -k 5 40 "$BROKER" run --worker "$BAD" --allow "$BASE/*" \
        --allow-addresses loopback "$@" "$tmp/$m.lua" > "$out" 2> "$tmp/$m.err"
    rc=$?
    took=$(($(date +%s) - t0))
}

# server_close PATH: the close code the server recorded for PATH (waits 3 s).
server_close() {
    j=0
    while [ $j -lt 30 ]; do
        c=$(sed -n "s|^CLOSE $1 ||p" "$tmp/server.out" | tail -n 1)
        if [ -n "$c" ]; then
            echo "$c"
            return
        fi
        sleep 0.1
        j=$((j + 1))
    done
    echo none
}

# common_ok MODE: no sanitizer report, the broker did not crash or hang.
common_ok() {
    if grep -q -e 'AddressSanitizer' -e 'runtime error:' -e 'LeakSanitizer' "$tmp/$1.err"; then
        fail "$1" "sanitizer report"
        return 1
    fi
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "$1" "broker did not finish within 40 s (hang)"
        return 1
    fi
    if [ "$rc" -gt 128 ]; then
        fail "$1" "broker died by signal $((rc - 128))"
        return 1
    fi
    return 0
}

# violation MODE TRACKED_CODE REASON [broker options]: the worker must be
# killed for REASON (a grep -E pattern); TRACKED_CODE is the close code the
# server must have seen for /k/MODE, or - when the mode opens no connection.
violation() {
    m=$1
    code=$2
    reason=$3
    shift 3
    run_mode "$m" "$@"
    common_ok "$m" || return
    want=4
    case $reason in *READY*within*) want=5 ;; esac
    if [ "$rc" -ne $want ]; then
        fail "$m" "broker exit status $rc, expected $want"
        return
    fi
    if ! grep -q -E "w1 killed \((protocol violation|not ready in time)\): .*$reason" "$tmp/$m.err"; then
        fail "$m" "no kill logged with reason /$reason/"
        return
    fi
    if grep -q '^survived' "$tmp/$m.report"; then
        fail "$m" "the worker was still alive seconds after the violation"
        return
    fi
    if [ "$code" != "-" ]; then
        if ! grep -q '^connected 1$\|^connected 5$' "$tmp/$m.report"; then
            fail "$m" "the worker's connection did not open"
            return
        fi
        got=$(server_close "/k/$m")
        if [ "$got" != "$code" ]; then
            fail "$m" "server saw the connection end with '$got', expected close $code"
            return
        fi
    fi
    echo "ok   $m (${took}s): $(grep -o -E 'killed \([^)]*\): .*' "$tmp/$m.err" | head -n 1)"
    passed=$((passed + 1))
}

# field MODE NAME: value of NAME=... in the worker's report.
field() {
    sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$tmp/$1.report" | tail -n 1
}

violation bad_len - 'ring: record length exceeds'
violation len_past_head - 'ring: record length exceeds'
violation len_huge - 'ring: record length exceeds'
violation bad_type_ring - 'ring: record type is not a known type'
violation unknown_type - 'record type 20 is not one a worker may send'
violation b2w_type - 'record type 35 is not one a worker may send'
violation padding_type - 'ring: padding record is malformed'
violation bad_seq - 'ring: record sequence number is not the next one'
violation head_backwards - "ring: peer's head position"
violation head_ahead - "ring: peer's head position"
violation head_unaligned - "ring: peer's head position"
violation tail_backwards - "ring: peer's tail position"
violation tail_ahead - "ring: peer's tail position"
violation ready_twice - 'unexpected READY record'
violation exit_bad_status - 'EXIT with unknown status 77'
violation exit_short - 'malformed EXIT record'
violation log_bad_flags - 'malformed LOG record'
violation log_with_conn - 'malformed LOG record'
violation connect_id0 1001 'CONNECT with a reused or invalid id 0'
violation connect_reused 1001 'CONNECT with a reused or invalid id 1'
violation connect_decreasing - 'CONNECT with a reused or invalid id 3'
violation connect_max_id 1001 'CONNECT with a reused or invalid id 4294967295'
violation connect_short 1001 'CONNECT record too short'
violation connect_bad_lengths 1001 'CONNECT record with bad counts or lengths'
violation connect_bad_header 1001 'CONNECT record: header runs past the end'
violation connect_flags 1001 'CONNECT with a reused or invalid id 2'
violation send_unopened 1001 'record type 5 for connection id 7 it never opened'
violation send_conn0 - 'record type 5 for connection id 0'
violation send_no_begin 1001 'SEND continuation without a BEGIN'
violation send_bad_sum 1001 'SEND chunks do not add up'
violation send_overrun 1001 'SEND chunks do not add up'
violation send_begin_twice 1001 'SEND BEGIN inside a message'
violation send_too_big 1001 'over the maximum'
violation send_bad_flags 1001 'SEND with unknown flags'
violation send_bad_utf8 1001 'SEND of text that is not UTF-8'
violation send_utf8_split 1001 'SEND of text that is not UTF-8'
violation send_text_as_binary 1001 'SEND of text that is not UTF-8'
violation send_beyond_window - "SEND beyond the connection's window"
violation send_after_close 1000 'SEND on connection 1 after its CLOSE'
violation close_twice 1000 'malformed or repeated CLOSE record'
violation close_bad_code 1001 'CLOSE record with an invalid code or reason'
violation close_bad_reason 1001 'CLOSE record with an invalid code or reason'
violation ping_bad 1001 'malformed PING record'
violation credit_beyond 1001 'CREDIT for 5 messages, but only 0 were delivered'
violation credit_flags 1001 'record type 8 with flags'
violation after_exit 1001 'record type 5 for connection id 1'
violation no_ready - 'no READY record within' --mem 7340033
violation connect_before_ready - 'CONNECT with a reused or invalid id 1' --mem 7340034

# The control: a well-behaved bad_worker is not killed.
run_mode good
if common_ok good; then
    if [ "$rc" -ne 0 ]; then
        fail good "broker exit status $rc, expected 0"
    elif ! grep -q '^echo=hello$' "$tmp/good.report"; then
        fail good "no echo"
    elif [ "$(server_close /k/good)" != 1000 ]; then
        fail good "server did not see close 1000"
    else
        echo "ok   good (${took}s): not killed, echo works, clean close"
        passed=$((passed + 1))
    fi
fi

# LOG flood: not a violation; the broker must keep serving the worker's
# connection and not buffer the output.
run_mode log_flood
if common_ok log_flood; then
    rtt=$(field log_flood worst_rtt_ms)
    grow=$(field log_flood rss_growth_kb)
    echoes=$(field log_flood echoes)
    if [ "$rc" -ne 0 ]; then
        fail log_flood "broker exit status $rc, expected 0"
    elif [ -z "$rtt" ] || [ "$rtt" -gt 1000 ] || [ "${echoes:-0}" -lt 5 ]; then
        fail log_flood "echo starved during the flood (worst ${rtt:-?} ms, ${echoes:-0} echoes)"
    elif [ -z "$grow" ] || [ "$grow" -gt "$RSS_LIMIT_KB" ]; then
        fail log_flood "broker memory grew by ${grow:-?} kB"
    else
        echo "ok   log_flood (${took}s): $(grep '^flood' "$tmp/log_flood.report")"
        passed=$((passed + 1))
    fi
fi

# A worker that stops reading while its connection floods: the broker pauses
# the socket instead of buffering; memory stays bounded.
run_mode never_read
if common_ok never_read; then
    grow=$(field never_read rss_growth_kb)
    if [ -z "$grow" ] || [ "$grow" -gt "$RSS_LIMIT_KB" ]; then
        fail never_read "broker memory grew by ${grow:-?} kB while the worker did not read"
    elif [ "$rc" -ne 5 ]; then
        fail never_read "broker exit status $rc, expected 5 (worker exited without EXIT)"
    else
        echo "ok   never_read (${took}s): rss growth ${grow} kB"
        passed=$((passed + 1))
    fi
fi

# A flood of CONNECTs the policy denies: each answered, the live connection
# keeps working, memory bounded.
run_mode connect_flood
if common_ok connect_flood; then
    grow=$(field connect_flood rss_growth_kb)
    echo_ok=$(field connect_flood echo)
    n=$(field connect_flood connects)
    fails=$(field connect_flood fails)
    if [ "$rc" -ne 0 ]; then
        fail connect_flood "broker exit status $rc, expected 0"
    elif [ "$echo_ok" != yes ]; then
        fail connect_flood "the open connection stopped working"
    elif [ -z "$n" ] || [ "$n" != "$fails" ]; then
        fail connect_flood "$n CONNECTs but $fails CONNECT_FAILs"
    elif [ -z "$grow" ] || [ "$grow" -gt "$RSS_LIMIT_KB" ]; then
        fail connect_flood "broker memory grew by ${grow:-?} kB"
    else
        echo "ok   connect_flood (${took}s): $(grep '^connect_flood' "$tmp/connect_flood.report")"
        passed=$((passed + 1))
    fi
fi

# Output the send window does not count (PING records, empty SEND messages)
# to a server that never reads: the broker fails that connection (1006 to
# the worker) once its output passes its limit, instead of buffering it all.
for m in ping_flood empty_flood; do
    run_mode $m
    common_ok $m || continue
    grow=$(field $m rss_growth_kb)
    closed=$(field $m closed)
    if [ "$rc" -ne 0 ]; then
        fail $m "broker exit status $rc, expected 0"
    elif [ "$closed" != 1006 ]; then
        fail $m "the connection was not failed (closed=${closed:-?}): output without bound"
    elif [ -z "$grow" ] || [ "$grow" -gt "$RSS_LIMIT_KB" ]; then
        fail $m "broker memory grew by ${grow:-?} kB"
    else
        echo "ok   $m (${took}s): $(grep '^out_flood' "$tmp/$m.report")"
        passed=$((passed + 1))
    fi
done

# A server that floods unsolicited 8-byte pongs while the worker does not
# read its ring: the broker stops reading that socket (as for messages)
# instead of queueing every pong for the worker.
cat > "$tmp/pong_server.py" <<'PYEOF'
import base64, hashlib, socket, threading, time
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def serve(c):
    try:
        req = b""
        while b"\r\n\r\n" not in req:
            d = c.recv(4096)
            if not d:
                return
            req += d
        key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        burst = b"\x8a\x08pongpong" * 4096
        end = time.time() + 8
        while time.time() < end:
            c.sendall(burst)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("LISTENING", s.getsockname()[1], flush=True)
s.settimeout(30)
try:
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
except OSError:
    pass
PYEOF
$PY "$tmp/pong_server.py" > "$tmp/pong_server.out" 2>&1 &
ppid=$!
pport=""
i=0
while [ $i -lt 50 ] && [ -z "$pport" ]; do
    pport=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/pong_server.out" | head -n 1)
    [ -n "$pport" ] || sleep 0.1
    i=$((i + 1))
done
m=pong_never_read
echo "$m ws://127.0.0.1:$pport $tmp/$m.report" > "$tmp/$m.lua"
: > "$tmp/$m.report"
t0=$(date +%s)
timeout -k 5 40 "$BROKER" run --worker "$BAD" --allow "ws://127.0.0.1:$pport/*" \
    --allow-addresses loopback "$tmp/$m.lua" > "$tmp/$m.out" 2> "$tmp/$m.err"
rc=$?
took=$(($(date +%s) - t0))
kill "$ppid" 2>/dev/null
if common_ok $m; then
    grow=$(field $m rss_growth_kb)
    if ! grep -q '^connected 1$' "$tmp/$m.report"; then
        fail $m "the connection to the pong server did not open"
    elif [ -z "$grow" ] || [ "$grow" -gt "$RSS_LIMIT_KB" ]; then
        fail $m "broker memory grew by ${grow:-?} kB while the worker did not read"
    elif [ "$rc" -ne 5 ]; then
        fail $m "broker exit status $rc, expected 5 (worker exited without EXIT)"
    else
        echo "ok   $m (${took}s): rss growth ${grow} kB"
        passed=$((passed + 1))
    fi
fi

# A thread flipping bytes in the ring while records flow: the broker either
# kills the worker for a violation or carries on; it must not crash.
run_mode flip
if common_ok flip; then
    if [ "$rc" -eq 4 ] && grep -q "w1 killed (protocol violation)" "$tmp/flip.err"; then
        echo "ok   flip (${took}s): killed: $(grep -o 'killed (protocol violation): .*' "$tmp/flip.err" | head -n 1)"
        passed=$((passed + 1))
    elif [ "$rc" -eq 0 ]; then
        echo "ok   flip (${took}s): survived the flips ($(cat "$tmp/flip.report" | tr '\n' ' '))"
        passed=$((passed + 1))
    else
        fail flip "broker exit status $rc"
    fi
fi

# Several tenants in one `broker serve`: a bad worker that violates the
# protocol a second in, another that floods LOG records, and a good tenant
# echoing every 50 ms the whole time. The bad one is killed (not restarted),
# the good one never stalls, and the broker keeps serving until SIGTERM.
serve_test() {
    for m in late_send_bad_utf8 log_flood good_loop; do
        echo "$m $BASE $tmp/serve_$m.report" > "$tmp/serve_$m.lua"
        : > "$tmp/serve_$m.report"
    done
    cat > "$tmp/serve.conf" <<EOF
[tenant evil]
rule = allow websocket.connect *
rule = allow websocket.connect.url $BASE/*

[script evil/bad]
path = $tmp/serve_late_send_bad_utf8.lua
restart = always
restart_delay = 100ms

[script evil/flood]
path = $tmp/serve_log_flood.lua
restart = never

[tenant good]
rule = allow websocket.connect *
rule = allow websocket.connect.url $BASE/*

[script good/loop]
path = $tmp/serve_good_loop.lua
restart = never
EOF
    "$BROKER" serve --config "$tmp/serve.conf" --worker "$BAD" > /dev/null 2> "$tmp/serve.err" &
    bpid=$!
    # The good tenant runs ~4 s; wait for its report (at most 15 s).
    j=0
    while [ $j -lt 150 ] && ! grep -q '^good_loop' "$tmp/serve_good_loop.report"; do
        sleep 0.1
        j=$((j + 1))
    done
    sleep 0.5
    alive=no
    kill -0 "$bpid" 2>/dev/null && alive=yes
    kill -TERM "$bpid" 2>/dev/null
    j=0
    while [ $j -lt 100 ] && kill -0 "$bpid" 2>/dev/null; do
        sleep 0.1
        j=$((j + 1))
    done
    if kill -0 "$bpid" 2>/dev/null; then
        kill -KILL "$bpid" 2>/dev/null
        wait "$bpid" 2>/dev/null
        fail serve "broker serve did not stop within 10 s of SIGTERM"
        return
    fi
    wait "$bpid" 2>/dev/null
    good=$(grep '^good_loop' "$tmp/serve_good_loop.report")
    echoes=$(echo "$good" | sed -n 's/.*echoes=\([0-9]*\).*/\1/p')
    rtt=$(echo "$good" | sed -n 's/.*worst_rtt_ms=\([0-9]*\).*/\1/p')
    kills=$(grep -c 'killed (protocol violation): SEND of text that is not UTF-8' "$tmp/serve.err")
    if grep -q -e 'AddressSanitizer' -e 'runtime error:' "$tmp/serve.err"; then
        fail serve "sanitizer report"
    elif [ "$alive" != yes ]; then
        fail serve "broker serve was not running any more"
    elif [ "$kills" -ne 1 ]; then
        fail serve "bad worker killed $kills times (expected once, never restarted)"
    elif [ "$(server_close /k/late_send_bad_utf8)" != 1001 ]; then
        fail serve "the bad worker's connection was not closed with 1001"
    elif [ -z "$echoes" ] || [ "$echoes" -lt 20 ] || [ "$rtt" -gt 1000 ]; then
        fail serve "good tenant stalled: ${good:-no report}"
    elif ! grep -q 'closed=1000' "$tmp/serve_good_loop.report" ||
        [ "$(server_close /k/good_loop)" != 1000 ]; then
        fail serve "good tenant's connection did not close cleanly"
    else
        echo "ok   serve: bad tenant killed once, good tenant ${echoes} echoes (worst ${rtt} ms), flood: $(grep -o 'worst_rtt_ms=[0-9]*' "$tmp/serve_log_flood.report")"
        passed=$((passed + 1))
    fi
}
if "$BROKER" serve --help > /dev/null 2>&1; then
    serve_test
else
    echo "skip serve: this broker has no serve command"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

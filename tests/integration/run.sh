#!/bin/sh
# Integration tests: Lua scripts in real sandboxed workers, through the real
# broker, against real WebSocket servers on loopback (our C demo server on
# libwebsockets, Debian's python3-websockets, Node's ws, and our raw scripted
# server), plain and over TLS with a certificate made here.
#
# Each tests/integration/ws_*.lua names the servers it runs against in a line
# `-- servers: c py node raw` (default: c py node). Placeholders replaced in
# the script: @BASE@ (ws://127.0.0.1:PORT of the server under test), @TLS_BASE@
# (wss://localhost:PORT of the same server with TLS), @RAW@ (the raw server),
# @REFUSED@ (a ws:// URL where nothing listens), @DENIED@ (a URL the policy
# does not allow), @TLS_RAW@ / @TLS_RAW_IP@ (the raw server over TLS, by name
# and by IP literal), @TLS_UNTRUSTED@ (TLS with a self-signed certificate that
# is not in --ca-file), @TLS_WRONGHOST@ / @TLS_WRONGHOST_IP@ (TLS with a trusted
# certificate for "other.test" only), @SILENT@ / @TLS_SILENT@ (a listening
# socket that never accepts: the TCP handshake completes, nothing answers).
# Prints `N passed, N failed` at the end.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
PY=/usr/bin/python3
tmp=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || {
    echo "cannot make a test certificate"; exit 1; }
# Two more: one for localhost that nobody trusts, one trusted for other.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tmp/ukey.pem" -out "$tmp/ucert.pem" >/dev/null 2>&1 &&
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=other.test -addext subjectAltName=DNS:other.test \
    -keyout "$tmp/okey.pem" -out "$tmp/ocert.pem" >/dev/null 2>&1 || {
    echo "cannot make the extra test certificates"; exit 1; }
cat "$tmp/cert.pem" "$tmp/ocert.pem" > "$tmp/ca.pem"

. tests/lib.sh # start NAME COMMAND...

start c "$BROKER" demo-server --port 0
start ctls "$BROKER" demo-server --port 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
start py $PY tests/peers/py_server.py --port 0
start pytls $PY tests/peers/py_server.py --port 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
if [ -d tests/peers/node_modules/ws ]; then
    start node node tests/peers/node_server.js --port 0
    start nodetls node tests/peers/node_server.js --port 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
fi
start raw $PY tests/peers/raw_server.py --port 0
start rawtls $PY tests/peers/raw_server.py --port 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
start untrusted $PY tests/peers/raw_server.py --port 0 --tls "$tmp/ucert.pem" "$tmp/ukey.pem"
start wronghost $PY tests/peers/raw_server.py --port 0 --tls "$tmp/ocert.pem" "$tmp/okey.pem"
# Accepts TCP connections in the kernel's backlog but never answers (ends
# by itself after 10 minutes at the latest).
start silent $PY -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print("LISTENING", s.getsockname()[1], flush=True); time.sleep(600)'

# A port where nothing listens: bind one and close it.
REFUSED_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

passed=0
failed=0
# SCRIPTS="tests/integration/ws_tls.lua ..." runs only those scripts.
for script in ${SCRIPTS:-tests/integration/ws_*.lua}; do
    servers=$(sed -n 's/^-- servers: *//p' "$script" | head -n 1)
    [ -n "$servers" ] || servers="c py node"
    for s in $servers; do
        eval "port=\${PORT_$s:-}"
        case $s in c) tls=ctls ;; py) tls=pytls ;; node) tls=nodetls ;; raw) tls=rawtls ;; *) tls= ;; esac
        eval "tport=\${PORT_$tls:-}"
        if [ -z "$port" ]; then
            echo "skip $script on $s: server not running"
            continue
        fi
        name="$(basename "$script" .lua)@$s"
        {
            cat tests/integration/prelude.lua
            sed -e "s|@BASE@|ws://127.0.0.1:$port|g" \
                -e "s|@TLS_BASE@|wss://localhost:${tport:-1}|g" \
                -e "s|@RAW@|ws://127.0.0.1:${PORT_raw:-1}|g" \
                -e "s|@REFUSED@|ws://127.0.0.1:$REFUSED_PORT|g" \
                -e "s|@DENIED@|ws://127.0.0.1:$port/denied|g" \
                -e "s|@TLS_RAW@|wss://localhost:${PORT_rawtls:-1}|g" \
                -e "s|@TLS_RAW_IP@|wss://127.0.0.1:${PORT_rawtls:-1}|g" \
                -e "s|@TLS_UNTRUSTED@|wss://localhost:${PORT_untrusted:-1}|g" \
                -e "s|@TLS_WRONGHOST@|wss://localhost:${PORT_wronghost:-1}|g" \
                -e "s|@TLS_WRONGHOST_IP@|wss://127.0.0.1:${PORT_wronghost:-1}|g" \
                -e "s|@SILENT@|ws://127.0.0.1:${PORT_silent:-1}|g" \
                -e "s|@TLS_SILENT@|wss://localhost:${PORT_silent:-1}|g" \
                -e "s|@SERVER@|$s|g" "$script"
            printf '\n__test_summary()\n'
        } > "$tmp/$name.lua"
        timeout 120 "$BROKER" run --quiet --wall 100000 \
            --deny "ws://127.0.0.1:$port/denied*" \
            --allow "ws://127.0.0.1:$port/*" --allow "wss://localhost:${tport:-1}/*" \
            --allow "ws://127.0.0.1:${PORT_raw:-1}/*" --allow "ws://127.0.0.1:$REFUSED_PORT/*" \
            --allow "wss://localhost:${PORT_rawtls:-1}/*" --allow "wss://127.0.0.1:${PORT_rawtls:-1}/*" \
            --allow "wss://localhost:${PORT_untrusted:-1}/*" \
            --allow "wss://localhost:${PORT_wronghost:-1}/*" \
            --allow "wss://127.0.0.1:${PORT_wronghost:-1}/*" \
            --allow "ws://127.0.0.1:${PORT_silent:-1}/*" --allow "wss://localhost:${PORT_silent:-1}/*" \
            --allow-addresses public,loopback --ca-file "$tmp/ca.pem" \
            "$tmp/$name.lua" > "$tmp/$name.log" 2>&1
        rc=$?
        sed "s/^/  $name: /" "$tmp/$name.log"
        line=$(grep -E '^\[w[0-9]+\] [0-9]+ passed, [0-9]+ failed' "$tmp/$name.log" | tail -n 1)
        p=$(echo "$line" | sed -nE 's/^\[w[0-9]+\] ([0-9]+) passed.*/\1/p')
        f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
        if [ -z "$p" ]; then
            echo "$name: no summary (exit $rc): 1 failure"
            p=0 f=1
        elif [ "$rc" != 0 ]; then
            echo "$name: exit status $rc: 1 more failure"
            f=$((f + 1))
        fi
        passed=$((passed + p))
        failed=$((failed + f))
    done
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/bin/sh
# Protocol conformance run: tests/conformance/conformance_server.py (scripted
# Autobahn-style cases, judged on the wire) against tests/conformance/
# echo_client.lua running in a real sandboxed worker through build/broker.
# Prints one line per case that did not pass, the per-group table and a final
# `N passed, N failed` line; exits non-zero when a case failed.
#
# Environment: BUILD (default build), CONF_ONLY (comma-separated case id
# prefixes, e.g. "6.4,7.9"), CONF_VERBOSE=1 (list every case),
# CONF_KEEP=DIR (copy the results JSON and the client log there).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
PY=/usr/bin/python3
DIR=tests/conformance
tmp=$(mktemp -d)
spid=""
cleanup() {
    if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ ! -x "$BROKER" ]; then
    echo "no $BROKER: build first"
    echo "0 passed, 1 failed"
    exit 1
fi

$PY $DIR/conformance_server.py --port 0 --results "$tmp/results.json" \
    > "$tmp/server.out" 2> "$tmp/server.err" &
spid=$!
port=""
i=0
while [ $i -lt 100 ]; do
    port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/server.out" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$port" ]; then
    echo "conformance server did not start:"
    cat "$tmp/server.err"
    echo "0 passed, 1 failed"
    exit 1
fi

only=$(printf '%s' "${CONF_ONLY:-}" | tr -cd '0-9A-Za-z.,')
sed -e "s|@CONF@|ws://127.0.0.1:$port|g" -e "s|@ONLY@|$only|g" $DIR/echo_client.lua \
    > "$tmp/echo.lua"
start=$(date +%s)
timeout 200 "$BROKER" run --mem 512M --wall 190000 \
    --allow "ws://127.0.0.1:$port/*" "$tmp/echo.lua" > "$tmp/client.log" 2>&1
rc=$?
end=$(date +%s)
kill "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
spid=""
echo "echo client exit status $rc after $((end - start)) s"
if [ "$rc" != 0 ]; then
    echo "client log tail:"
    tail -n 20 "$tmp/client.log"
fi
if [ -s "$tmp/server.err" ]; then
    echo "conformance server stderr:"
    head -n 20 "$tmp/server.err"
fi
if [ -n "${CONF_KEEP:-}" ]; then
    mkdir -p "$CONF_KEEP" && cp "$tmp/results.json" "$tmp/client.log" "$tmp/server.err" "$CONF_KEEP/"
fi
verbose=""
[ "${CONF_VERBOSE:-0}" = 1 ] && verbose=--verbose
if [ -n "$only" ]; then
    $PY $DIR/conformance_server.py --summarize "$tmp/results.json" "$tmp/client.log" \
        --only "$only" $verbose
else
    $PY $DIR/conformance_server.py --summarize "$tmp/results.json" "$tmp/client.log" $verbose
fi
st=$?
[ "$rc" = 0 ] || st=1
exit $st

#!/bin/sh
# The demo: starts the loopback demo server (echo, chat room, price ticker on
# port 8765) and runs the examples in sandboxed workers through the broker.
# Nothing leaves this machine.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PORT=8765
"$BUILD/broker" demo-server --port $PORT > /tmp/demo-server.$$ 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f /tmp/demo-server.$$' EXIT INT TERM
i=0
until grep -q LISTENING /tmp/demo-server.$$ 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then echo "demo server did not start"; cat /tmp/demo-server.$$; exit 1; fi
    sleep 0.1
done
status=0
for ex in echo prices chat denied; do
    echo "=== examples/$ex.lua"
    "$BUILD/broker" run --allow "ws://127.0.0.1:$PORT/echo" --allow "ws://127.0.0.1:$PORT/chat*" \
        --allow "ws://127.0.0.1:$PORT/prices*" --wall 60000 "examples/$ex.lua" || status=1
done
exit $status

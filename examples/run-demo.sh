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

# The same scripts as a service: two tenants from examples/demo.conf, each
# under its own policy and quotas, watched through the admin socket.
echo "=== broker serve --config examples/demo.conf"
"$BUILD/broker" policy check examples/demo.conf || status=1
rm -f /tmp/wshost-demo-audit.jsonl
"$BUILD/broker" serve --config examples/demo.conf > /tmp/demo-serve.$$ 2>&1 &
serve=$!
trap 'kill $server $serve 2>/dev/null; rm -f /tmp/demo-server.$$ /tmp/demo-serve.$$' EXIT INT TERM
i=0
until "$BUILD/broker" admin --config examples/demo.conf status 2>/dev/null |
    grep -q "^workers 0 "; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "the service did not finish its scripts"; status=1; break; fi
    sleep 0.1
done
grep '^\[' /tmp/demo-serve.$$ | grep -v 'USD' | sort
"$BUILD/broker" admin --config examples/demo.conf status
echo "=== broker policy explain --config examples/demo.conf --tenant guest ws://127.0.0.1:$PORT/admin"
"$BUILD/broker" policy explain --config examples/demo.conf --tenant guest \
    "ws://127.0.0.1:$PORT/admin" | tail -n 6
echo "=== audit log (/tmp/wshost-demo-audit.jsonl), first lines"
head -n 3 /tmp/wshost-demo-audit.jsonl
"$BUILD/broker" admin --config examples/demo.conf drain
wait $serve || status=1
exit $status

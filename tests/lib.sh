# Shell helpers shared by the test runners (sourced, not run).
#
# start NAME COMMAND...: starts a test server in the background with its
# output in $tmp/NAME.out and .err, adds its pid to $pids (the caller's
# cleanup kills them), waits up to 10 s for its `LISTENING <port>` line and
# sets PORT_<NAME>. Returns 1 (PORT_<NAME> empty) when it did not start.
start() {
    name=$1
    shift
    : > "$tmp/$name.out"
    "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
    pid=$!
    pids="$pids $pid"
    i=0
    while [ $i -lt 100 ]; do
        port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/$name.out" | head -n 1)
        if [ -n "$port" ]; then
            eval "PORT_$name=$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "server $name did not start:"
    cat "$tmp/$name.err"
    eval "PORT_$name="
    return 1
}

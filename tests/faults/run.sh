#!/bin/sh
# Hostile and failing servers: Lua scripts in real sandboxed workers, through
# the real broker, against tests/faults/fault_server.py (bombs, absurd
# lengths, empty-frame floods, slow handshakes, peers that never read, FIN,
# RST or kill -9 in the middle of a message, TLS failures) and the C demo
# server (many connections with a slow consumer). Loopback only.
#
# Each tests/faults/f_*.lua is run once with the integration prelude
# (tests/integration/prelude.lua). Placeholders replaced in the script:
#   @FAULT@          ws://127.0.0.1:PORT of the fault server
#   @TLS_GOOD@       wss://localhost:PORT, fault server with a trusted cert
#   @TLS_UNTRUSTED@  wss://localhost:PORT, certificate not in --ca-file
#   @TLS_WRONGHOST@  wss://localhost:PORT, trusted certificate for another name
#   @TLS_SILENT@ @TLS_CLOSE@ @TLS_RST@ @TLS_GARBAGE@
#                    wss://localhost:PORT where TCP is accepted and then
#                    nothing / FIN / RST / plain-text HTTP comes back
#   @C@              ws://127.0.0.1:PORT of the C demo server
# A line `-- max_broker_rss_mib: N` makes the run fail when the broker's peak
# resident memory (VmHWM, sampled from /proc while the script runs) exceeds N
# MiB; skipped for sanitizer builds (BUILD containing "asan"), whose shadow
# memory makes the figure meaningless. Prints `N passed, N failed` at the end.
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
trap cleanup EXIT INT TERM HUP PIPE

mkcert() { # mkcert NAME CN SAN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$2" -addext "subjectAltName=$3" \
        -keyout "$tmp/$1.key" -out "$tmp/$1.pem" >/dev/null 2>&1
}
mkcert good localhost DNS:localhost,IP:127.0.0.1 &&
    mkcert untrusted localhost DNS:localhost,IP:127.0.0.1 &&
    mkcert wronghost other.example DNS:other.example || {
    echo "cannot make test certificates"; echo "0 passed, 1 failed"; exit 1; }
cat "$tmp/good.pem" "$tmp/wronghost.pem" > "$tmp/ca.pem"

. tests/lib.sh # start NAME COMMAND...

start c "$BROKER" demo-server --port 0
start fault $PY tests/faults/fault_server.py --port 0 \
    --tls good "$tmp/good.pem" "$tmp/good.key" \
    --tls untrusted "$tmp/untrusted.pem" "$tmp/untrusted.key" \
    --tls wronghost "$tmp/wronghost.pem" "$tmp/wronghost.key" \
    --raw silent silent --raw close close --raw rst rst --raw garbage garbage
xport() { sed -n "s/^PORT $1 \([0-9]*\)/\1/p" "$tmp/fault.out" | head -n 1; }
tls_allow=""
for n in good untrusted wronghost silent close rst garbage; do
    tls_allow="$tls_allow --allow wss://localhost:$(xport $n)/*"
done

# rss_watch PID FILE: records VmHWM/VmRSS (kB) of PID every 50 ms while it runs.
rss_watch() {
    while [ -r "/proc/$1/status" ]; do
        awk '/^VmHWM|^VmRSS/ {printf "%s %s ", $1, $2} END {print ""}' \
            "/proc/$1/status" 2>/dev/null >> "$2"
        sleep 0.05
    done
}

case $BUILD in *asan*) memcheck=0 ;; *) memcheck=1 ;; esac
passed=0
failed=0
for script in tests/faults/f_*.lua; do
    name=$(basename "$script" .lua)
    {
        cat tests/integration/prelude.lua
        sed -e "s|@FAULT@|ws://127.0.0.1:${PORT_fault:-1}|g" \
            -e "s|@TLS_GOOD@|wss://localhost:$(xport good)|g" \
            -e "s|@TLS_UNTRUSTED@|wss://localhost:$(xport untrusted)|g" \
            -e "s|@TLS_WRONGHOST@|wss://localhost:$(xport wronghost)|g" \
            -e "s|@TLS_SILENT@|wss://localhost:$(xport silent)|g" \
            -e "s|@TLS_CLOSE@|wss://localhost:$(xport close)|g" \
            -e "s|@TLS_RST@|wss://localhost:$(xport rst)|g" \
            -e "s|@TLS_GARBAGE@|wss://localhost:$(xport garbage)|g" \
            -e "s|@C@|ws://127.0.0.1:${PORT_c:-1}|g" "$script"
        printf '\n__test_summary()\n'
    } > "$tmp/$name.lua"
    t0=$(date +%s)
    timeout 150 "$BROKER" run --quiet --wall 120000 \
        --allow "ws://127.0.0.1:${PORT_fault:-1}/*" $tls_allow \
        --allow "ws://127.0.0.1:${PORT_c:-1}/*" \
        --allow-addresses public,loopback --ca-file "$tmp/ca.pem" \
        "$tmp/$name.lua" > "$tmp/$name.log" 2>&1 &
    bpid=$!
    # the broker is timeout's child
    i=0
    brk=""
    while [ $i -lt 50 ] && [ -z "$brk" ]; do
        brk=$(cat "/proc/$bpid/task/$bpid/children" 2>/dev/null | awk '{print $1}')
        [ -n "$brk" ] || sleep 0.02
        i=$((i + 1))
    done
    : > "$tmp/$name.rss"
    wpid=""
    if [ -n "$brk" ]; then
        rss_watch "$brk" "$tmp/$name.rss" &
        wpid=$!
    fi
    wait "$bpid"
    rc=$?
    [ -n "$wpid" ] && wait "$wpid"
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
    hwm=$(awk '{for (i = 1; i < NF; i++) if ($i == "VmHWM:" && $(i+1) > m) m = $(i+1)} END {print int(m / 1024)}' "$tmp/$name.rss")
    cap=$(sed -n 's/^-- max_broker_rss_mib: *\([0-9]*\).*/\1/p' "$script" | head -n 1)
    echo "$name: $(($(date +%s) - t0)) s, broker peak RSS ${hwm} MiB${cap:+ (cap $cap MiB)}"
    if [ -n "$cap" ] && [ "$memcheck" = 1 ]; then
        if [ "$hwm" -gt 0 ] && [ "$hwm" -le "$cap" ]; then
            p=$((p + 1))
        else
            echo "not ok - $name: broker peak RSS ${hwm} MiB over the cap of $cap MiB"
            f=$((f + 1))
        fi
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

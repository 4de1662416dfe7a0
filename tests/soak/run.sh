#!/bin/sh
# Soak tests: a million messages through one connection (both directions) and
# a thousand connect/close cycles in one worker, through the real broker and
# a sandboxed worker against the C demo server on loopback. The scripts print
# `MARK <name>` and hold still; at each mark this script samples the resident
# memory (RssAnon, VmRSS) of the broker and of the worker from /proc and checks
# that it stays flat: from the `warm` mark (20 %) to the end it may grow by at
# most SOAK_MAX_GROWTH_KIB (default 4096 KiB), and from `mid` (50 %) to the
# end by at most half of that. Figures are printed as `soak: ...` lines (for
# `make bench`). Sanitizer builds (BUILD containing "asan") run the scripts
# but skip the memory checks. Prints `N passed, N failed` at the end; about
# 10 s (about 30 s under ASan).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
MAX=${SOAK_MAX_GROWTH_KIB:-4096}
case $BUILD in *asan*) memcheck=0 ;; *) memcheck=1 ;; esac
tmp=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM HUP PIPE

"$BROKER" demo-server --port 0 > "$tmp/c.out" 2> "$tmp/c.err" &
pids="$pids $!"
port=""
i=0
while [ $i -lt 100 ] && [ -z "$port" ]; do
    port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/c.out" | head -n 1)
    [ -n "$port" ] || sleep 0.1
    i=$((i + 1))
done
if [ -z "$port" ]; then
    echo "demo server did not start"; cat "$tmp/c.err"; echo "0 passed, 1 failed"; exit 1
fi

# rss PID: "VmRSS RssAnon" in KiB. The check uses RssAnon (the process's
# private memory): VmRSS also counts the shared ring pages, which both sides
# touch gradually as the rings wrap (fixed in size, so bounded by design).
rss() { awk '/^VmRSS/ {v = $2} /^RssAnon/ {a = $2} END {print v, a}' "/proc/$1/status" 2>/dev/null; }

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
notok() { failed=$((failed + 1)); echo "not ok - $1"; }

# soak NAME PHASE...: runs tests/soak/NAME.lua, sampling at its marks; each
# PHASE is LABEL:WARM:MID:END naming the marks whose samples are compared.
soak() {
    name=$1
    shift
    sed "s|@C@|ws://127.0.0.1:$port|g" "tests/soak/$name.lua" > "$tmp/$name.lua"
    t0=$(date +%s)
    timeout 170 "$BROKER" run --quiet --allow "ws://127.0.0.1:$port/*" \
        --allow-addresses loopback "$tmp/$name.lua" > "$tmp/$name.log" 2>&1 &
    tpid=$!
    brk="" wrk="" seen=0
    : > "$tmp/$name.samples"
    while kill -0 "$tpid" 2>/dev/null; do
        [ -n "$brk" ] || brk=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null | awk '{print $1}')
        [ -z "$brk" ] || [ -n "$wrk" ] ||
            wrk=$(cat "/proc/$brk/task/$brk/children" 2>/dev/null | awk '{print $1}')
        n=$(grep -c '^\[w[0-9]*\] MARK ' "$tmp/$name.log")
        if [ "$n" -gt "$seen" ]; then
            seen=$n
            m=$(grep '^\[w[0-9]*\] MARK ' "$tmp/$name.log" | sed -n "${n}p" | awk '{print $3}')
            echo "$m $(rss "$brk") $(rss "$wrk")" >> "$tmp/$name.samples" # m bV bA wV wA
        fi
        sleep 0.05
    done
    wait "$tpid"
    rc=$?
    secs=$(($(date +%s) - t0))
    grep -v '^\[w[0-9]*\] MARK ' "$tmp/$name.log" | sed "s/^/  $name: /"
    if [ "$rc" = 0 ] && grep -q '^\[w[0-9]*\] SOAK DONE' "$tmp/$name.log"; then
        ok "$name ran to the end (${secs} s)"
    else
        notok "$name ended with status $rc after ${secs} s"
        return
    fi
    if [ "$memcheck" = 0 ]; then
        echo "skip - $name: memory checks (sanitizer build: quarantine and shadow memory)"
        return
    fi
    for phase in "$@"; do
        IFS=: read -r label warm mid end <<PHASE
$phase
PHASE
        for who in broker worker; do
            col=3
            [ "$who" = worker ] && col=5
            vr=$(awk -v m="$end" -v c="$((col - 1))" '$1 == m {print $c}' "$tmp/$name.samples")
            s=$(awk -v c="$col" '$1 == "start" {print $c}' "$tmp/$name.samples")
            w=$(awk -v m="$warm" -v c="$col" '$1 == m {print $c}' "$tmp/$name.samples")
            md=$(awk -v m="$mid" -v c="$col" '$1 == m {print $c}' "$tmp/$name.samples")
            e=$(awk -v m="$end" -v c="$col" '$1 == m {print $c}' "$tmp/$name.samples")
            echo "soak: $label $who RssAnon KiB start=${s:-?} warm=${w:-?} mid=${md:-?} end=${e:-?} (VmRSS at end ${vr:-?})"
            if [ -z "$w" ] || [ -z "$md" ] || [ -z "$e" ]; then
                notok "$label: $who memory samples missing"
            elif [ $((e - w)) -le "$MAX" ] && [ $((e - md)) -le $((MAX / 2)) ]; then
                ok "$label: $who memory flat (warm->end $((e - w)) KiB, mid->end $((e - md)) KiB)"
            else
                notok "$label: $who memory grew (warm->end $((e - w)) KiB, mid->end $((e - md)) KiB)"
            fi
        done
    done
}

soak soak_messages "receive_1M:recv_warm:recv_mid:recv_end" "send_1M:send_warm:send_mid:send_end"
soak soak_cycles "cycles_1000:warm:mid:end"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

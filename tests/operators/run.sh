#!/bin/sh
# Operator tests: `broker policy check/explain`, and `broker serve` with
# several tenants at once against the C demo server on loopback: address
# policy after DNS ("localhost", and names from the test's own /etc/hosts in
# a private mount namespace), every quota hit one by one while other tenants
# keep working (connections, connects, option caps, memory/cpu/wall, byte and
# message rates both ways, the 1013 close of a message flood, log rate,
# max_workers), restart with back-off and start limit, quarantine after a
# protocol violation, admin status (text and --json), metrics, start, stop
# (graceful, now, kill after drain_timeout), reload with a broken config (old
# stays), reload without and with revoke (1008 for policy, 1013 over
# max_connections, notes for settings that need a restart), the audit log
# field by field, and drain. Prints `N passed, N failed`.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BROKER=$BUILD/broker
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/wshost-ops.XXXXXX)
pids=""
passed=0
failed=0
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/    /'; }
# check NAME COMMAND...: passes when the command succeeds.
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi; }
has() { grep -q -- "$2" "$1"; }     # has FILE REGEX
admin() { "$BROKER" admin --socket "$tmp/admin.sock" "$@"; }
# wait_for SECONDS COMMAND...: polls until the command succeeds.
wait_for() {
    t=$1; shift; i=0
    while [ $i -lt $((t * 10)) ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

# ---- the demo server ----
"$BROKER" demo-server --port 0 > "$tmp/ds.out" 2>&1 &
pids="$pids $!"
wait_for 10 grep -q LISTENING "$tmp/ds.out" || { echo "demo server did not start"; echo "0 passed, 1 failed"; exit 1; }
PORT=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$tmp/ds.out" | head -n 1)
for f in tests/operators/*.lua; do sed "s/@PORT@/$PORT/g" "$f" > "$tmp/$(basename "$f")"; done

# ---- the configuration ----
# $1: extra rule line for roomy, $2: extra [broker] line, $3: capped's
# max_connections (reload tests). Line numbers matter (the audit checks name
# rules by file:line): new sections go at the end.
write_config() {
cat > "$tmp/ops.conf" <<EOF
[broker]
admin_socket = admin.sock
audit_log = audit.jsonl
drain_timeout = 3s
${2:-}
[tenant strict]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://localhost:$PORT/*

[tenant loopy]
allow_addresses = public,loopback
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://localhost:$PORT/*

[tenant tight]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
max_connections = 2
connects_per_sec = 5
max_read_limit = 1M
max_channel_capacity = 50
max_compression = no_context
memory = 8M
cpu = 300ms
wall = 1s

[tenant roomy]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
$1
connects_per_sec = 1000

[tenant slow]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/blast*
messages_in_per_sec = 20
log_lines_per_sec = 10

[tenant crashy]

[tenant trickle]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/count
bytes_out_per_sec = 512K

[tenant few]
max_workers = 1

[script strict/addr]
path = addr.lua
restart = never
[script loopy/addr]
path = addr.lua
restart = never
[script tight/quota]
path = quota.lua
restart = never
[script tight/mem]
path = mem.lua
restart = never
[script tight/cpu]
path = cpu.lua
restart = never
[script tight/wall]
path = wall.lua
restart = never
[script roomy/quota]
path = quota.lua
restart = never
[script roomy/steady]
path = steady.lua
restart = never
[script roomy/blast]
path = blast.lua
restart = never
[script roomy/holder]
path = holder.lua
restart = never
[script roomy/sleeper]
path = sleeper.lua
autostart = no
[script slow/blast]
path = blast.lua
restart = never
[script slow/log]
path = log.lua
restart = never
[script crashy/crash]
path = crash.lua
restart = on-failure
restart_delay = 100ms
restart_max_delay = 400ms
start_limit = 3
start_window = 1m
[script trickle/upload]
path = upload.lua
restart = never
[script roomy/upload]
path = upload.lua
restart = never
[script few/nap1]
path = nap.lua
restart = never
[script few/nap2]
path = nap.lua
restart = never

[tenant sip]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
bytes_in_per_sec = 256K
[tenant paced]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
messages_out_per_sec = 20
[tenant flood]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
messages_out_per_sec = 20
[tenant free]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
[tenant capped]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://127.0.0.1:$PORT/*
max_connections = ${3:-8}
[script sip/bigblast]
path = bigblast.lua
restart = never
autostart = no
[script free/bigblast]
path = bigblast.lua
restart = never
autostart = no
[script paced/chatter]
path = chatter.lua
restart = never
autostart = no
[script free/chatter]
path = chatter.lua
restart = never
autostart = no
[script flood/flood]
path = flood.lua
restart = never
autostart = no
[script capped/h1]
path = holder.lua
restart = never
[script capped/h2]
path = holder.lua
restart = never
[script free/spin]
path = spin.lua
autostart = no
EOF
}
write_config ""
cp "$tmp/ops.conf" "$tmp/good.conf"

# ---- policy check / explain ----
out=$("$BROKER" policy check "$tmp/ops.conf" 2>&1)
check "policy check accepts the test config" test $? = 0
printf '[tenant a]\nmax_connections = many\nrule = allow websocket.connect.url wss://x*\n[script a/s]\npath = missing.lua\n[oops]\n' > "$tmp/broken.conf"
out=$("$BROKER" policy check "$tmp/broken.conf" 2>&1); rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q "broken.conf:2: max_connections" &&
   echo "$out" | grep -q "broken.conf:3: rule:" && echo "$out" | grep -q "broken.conf:5: path:" &&
   echo "$out" | grep -q "broken.conf:6: unknown section"; then
    ok "policy check reports every error as file:line"
else bad "policy check reports every error as file:line" "rc=$rc $out"; fi
out=$("$BROKER" policy explain --config "$tmp/ops.conf" --tenant slow "WS://127.0.0.1:$PORT/blast?n=1" 2>&1); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "canonical: ws://127.0.0.1:$PORT/blast?n=1" &&
   echo "$out" | grep -q "allowed by .*ops.conf:35" && echo "$out" | grep -q "=> ALLOW"; then
    ok "policy explain: allowed, with the deciding rule"
else bad "policy explain: allowed, with the deciding rule" "rc=$rc $out"; fi
out=$("$BROKER" policy explain --config "$tmp/ops.conf" --tenant slow "ws://127.0.0.1:$PORT/echo" 2>&1); rc=$?
if [ $rc = 1 ] && echo "$out" | grep -q "no rule allows it" && echo "$out" | grep -q "=> DENY"; then
    ok "policy explain: denied, and why"
else bad "policy explain: denied, and why" "rc=$rc $out"; fi
out=$("$BROKER" policy explain --config "$tmp/ops.conf" --tenant strict "ws://localhost:$PORT/x" 2>&1)
if echo "$out" | grep -q 'allow_addresses = public$'; then ok "policy explain names the address classes"
else bad "policy explain names the address classes" "$out"; fi

# ---- serve ----
(cd "$tmp" && exec "$OLDPWD/$BROKER" serve --config ops.conf > serve.out 2> serve.err) &
serve_pid=$!
pids="$pids $serve_pid"
if ! wait_for 10 grep -q READY "$tmp/serve.out"; then
    bad "serve starts" "$(cat "$tmp/serve.err")"
    echo "$passed passed, $failed failed"; exit 1
fi
ok "serve starts and prints READY"
status() { admin status > "$tmp/status" 2>&1; }
state_is() { status; grep -q "script $1 $2" "$tmp/status"; }   # state_is tenant/script state

# Phase 1: everything runs at once; wait for the short scripts to end.
for s in strict/addr loopy/addr tight/quota roomy/quota tight/mem tight/cpu tight/wall \
         roomy/steady roomy/blast slow/blast slow/log few/nap1 few/nap2 trickle/upload \
         roomy/upload; do
    wait_for 20 state_is "$s" exited || echo "note: $s did not exit: $(grep "script $s " "$tmp/status")"
done
# Phase 2 (fewer workers starting at once on a loaded machine): the rate scripts.
phase2="sip/bigblast free/bigblast paced/chatter free/chatter flood/flood"
for s in $phase2; do admin start "$s" > /dev/null 2>&1; done
for s in $phase2; do
    wait_for 20 state_is "$s" exited || echo "note: $s did not exit: $(grep "script $s " "$tmp/status")"
done
O=$tmp/serve.out
E=$tmp/serve.err
line() { grep "^\[$1 w[0-9]*\] $2" "$O" | head -n 1; }

# Address policy after DNS.
l=$(line strict/addr "addr:")
case $l in *"addr: PermissionDenied"*"localhost resolves to 127.0.0.1, a loopback address"*) ok "address policy: a name resolving to loopback is denied" ;;
    *) bad "address policy: a name resolving to loopback is denied" "$l" ;; esac
l=$(line loopy/addr "addr:")
case $l in *"addr: ok hi"*) ok "address policy: allowed when the tenant allows loopback" ;;
    *) bad "address policy: allowed when the tenant allows loopback" "$l" ;; esac

# Quotas one by one (tight), the same requests succeed for roomy at the same time.
expect() { # NAME TENANT PREFIX PATTERN
    l=$(line "$2" "$3")
    case $l in *$4*) ok "$1" ;; *) bad "$1" "$l" ;; esac
}
expect "quota max_connections: third connection RATE_LIMITED" tight/quota "conns:" "conns: ok ok RateLimited too many connections*max_connections*"
expect "quota max_read_limit: INVALID" tight/quota "read_limit:" "read_limit: Invalid invalid option read_limit*max_read_limit*"
expect "quota max_channel_capacity: INVALID" tight/quota "capacity:" "capacity: Invalid*max_channel_capacity*"
expect "quota max_compression: INVALID" tight/quota "compression:" "compression: Invalid*no_context*"
l=$(line tight/quota "rate:")
case $l in *"rate: ok "[1-4]" limited "[1-9]*) ok "quota connects_per_sec: RATE_LIMITED after the burst" ;;
    *) bad "quota connects_per_sec: RATE_LIMITED after the burst" "$l" ;; esac
expect "other tenant unaffected: connections" roomy/quota "conns:" "conns: ok ok ok"
expect "other tenant unaffected: read_limit" roomy/quota "read_limit:" "read_limit: ok"
expect "other tenant unaffected: capacity and compression" roomy/quota "compression:" "compression: ok"
expect "other tenant unaffected: connects" roomy/quota "rate:" "rate: ok 12 limited 0"
expect "other tenant unaffected: steady echo through all of it" roomy/steady "steady:" "steady: 20 of 20"
check "quota memory: worker ended at its memory cap" grep -q "script tight/mem exited.*last_end \"memory cap" "$tmp/status"
check "quota cpu: worker ended at its CPU budget" grep -q "script tight/cpu exited.*last_end \"CPU budget" "$tmp/status"
check "quota wall: worker ended at its wall-clock budget" grep -q "script tight/wall exited.*last_end \"wall-clock budget" "$tmp/status"
check "quota kills are not printed as survival" sh -c "! grep -q 'survived' '$O'"
# Receive rate: 60 messages at 20/s take >= ~2 s for slow, not for roomy.
ms_slow=$(line slow/blast "blast:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
ms_roomy=$(line roomy/blast "blast:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
if [ -n "$ms_slow" ] && [ -n "$ms_roomy" ] && [ "$ms_slow" -ge 1500 ] && [ "$ms_roomy" -lt 1500 ] &&
   line slow/blast "blast:" | grep -q "blast: 61 msgs"; then
    ok "quota messages_in_per_sec throttles (slow ${ms_slow} ms, roomy ${ms_roomy} ms), nothing lost"
else bad "quota messages_in_per_sec throttles" "slow=$ms_slow roomy=$ms_roomy $(line slow/blast blast:)"; fi
# Send rate: 2 MiB at 512 KiB/s after a 512 KiB burst: >= ~3 s (held in the broker).
ms_slow=$(line trickle/upload "upload:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
ms_roomy=$(line roomy/upload "upload:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
if [ -n "$ms_slow" ] && [ -n "$ms_roomy" ] && [ "$ms_slow" -ge 2000 ] && [ "$ms_roomy" -lt 2000 ] &&
   line trickle/upload "upload:" | grep -q "upload: count=32 bytes=2097152 "; then
    ok "quota bytes_out_per_sec throttles (trickle ${ms_slow} ms, roomy ${ms_roomy} ms), nothing lost"
else bad "quota bytes_out_per_sec throttles" "slow=$ms_slow roomy=$ms_roomy $(line trickle/upload upload:)"; fi
# Receive byte rate: 768 KiB at 256 KiB/s after a 256 KiB burst: >= ~2 s.
ms_slow=$(line sip/bigblast "bigblast:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
ms_free=$(line free/bigblast "bigblast:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
if [ -n "$ms_slow" ] && [ -n "$ms_free" ] && [ "$ms_slow" -ge 1200 ] && [ "$ms_free" -lt 1200 ] &&
   line sip/bigblast "bigblast:" | grep -q "bigblast: 13 msgs 786432 bytes"; then
    ok "quota bytes_in_per_sec throttles (sip ${ms_slow} ms, free ${ms_free} ms), nothing lost"
else bad "quota bytes_in_per_sec throttles" "sip=$ms_slow free=$ms_free $(line sip/bigblast bigblast:)"; fi
# Send message rate with tiny messages (the 1 MiB window never fills): 61
# messages at 20/s after a burst of 20 arrive only after >= ~2 s.
ms_slow=$(line paced/chatter "chatter:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
ms_free=$(line free/chatter "chatter:" | sed -n 's/.*in \([0-9]*\) ms.*/\1/p')
if [ -n "$ms_slow" ] && [ -n "$ms_free" ] && [ "$ms_slow" -ge 1500 ] && [ "$ms_free" -lt 1500 ] &&
   line paced/chatter "chatter:" | grep -q "chatter: count=60 bytes=60 "; then
    ok "quota messages_out_per_sec throttles tiny messages (paced ${ms_slow} ms, free ${ms_free} ms), nothing lost"
else bad "quota messages_out_per_sec throttles tiny messages" "paced=$ms_slow free=$ms_free $(line paced/chatter chatter:) $(grep "free/chatter" "$O" "$E")"; fi
# Beyond what throttling may hold (5 s of the rate): the connection ends with 1013.
expect "quota messages_out_per_sec: a flood is closed with 1013" flood/flood "flood:" "flood: closed code 1013 by broker reason try again later: messages_out_per_sec*"
# Log rate.
n_log=$(grep -c '^\[slow/log w[0-9]*\] line ' "$O")
if [ "$n_log" -lt 100 ] && grep -q '^\[slow/log w[0-9]*\] (.*output lines suppressed: log_lines_per_sec quota)' "$O" &&
   grep -q '^\[slow/log w[0-9]*\] last line' "$O"; then
    ok "quota log_lines_per_sec: $n_log of 300 lines printed, the rest counted as suppressed"
else bad "quota log_lines_per_sec" "printed $n_log"; fi
# max_workers: nap1 and nap2 never overlap; one waited.
check "quota max_workers: the second script waited for a slot" grep -q "few/nap.: waiting: tenant few runs 1 workers (max_workers)" "$E"
check "quota max_workers: both scripts ran in the end" sh -c "[ \$(grep -c '^\[few/nap[12] w[0-9]*\] nap: done' '$O') = 2 ]"
# Restart with back-off and the start limit.
wait_for 10 state_is crashy/crash failed
check "restart on failure, then the start limit stops it" grep -q "script crashy/crash failed starts 3 restarts 2 last_end \"start limit" "$tmp/status"

# ---- admin ----
status
check "admin status: per-tenant counters" grep -q "^tenant roomy workers [0-9]*/8 connections [0-9]*/64 connects [1-9]" "$tmp/status"
check "admin status: configuration revision 1" grep -q "revision 1 " "$tmp/status"
admin metrics > "$tmp/metrics" 2>&1
if [ -s "$tmp/metrics" ] && ! grep -v '^#' "$tmp/metrics" | grep -qvE '^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9]+$' &&
   grep -q '^wshost_quota_rejected_total{tenant="tight",quota="max_connections"} [1-9]' "$tmp/metrics" &&
   grep -q '^wshost_quota_rejected_total{tenant="few",quota="max_workers"} 1$' "$tmp/metrics" &&
   grep -q '^wshost_quota_rejected_total{tenant="flood",quota="messages_out_per_sec"} 1$' "$tmp/metrics" &&
   grep -q '^wshost_quota_rejected_total{tenant="free",quota="max_workers"} 0$' "$tmp/metrics" &&
   grep -q '^wshost_throttled_total{tenant="sip"} [1-9]' "$tmp/metrics" &&
   grep -q '^wshost_throttled_total{tenant="free"} 0$' "$tmp/metrics" &&
   grep -q '^# TYPE wshost_connections gauge' "$tmp/metrics"; then
    ok "admin metrics: Prometheus text format with per-tenant quota counters"
else bad "admin metrics" "$(grep -v '^#' "$tmp/metrics" | grep -vE '^[a-z_]+(\{.*\})? [0-9]+$' | head -3)"; fi
out=$(admin start roomy/sleeper 2>&1)
wait_for 5 grep -q '^\[roomy/sleeper w[0-9]*\] sleeper: up' "$O"
check "admin start runs a script" state_is roomy/sleeper running
out=$(admin stop roomy/sleeper 2>&1)
check "admin stop stops it (and it is not restarted)" wait_for 5 state_is roomy/sleeper stopped
# (The worker's run ends on SHUTDOWN by itself; its last end is not a kill.)
l=$(grep "script roomy/sleeper " "$tmp/status")
case $l in *"stopped starts 1 restarts 0 last_end"*"killed"*) bad "admin stop is graceful: SHUTDOWN, the run ends by itself" "$l" ;;
    *"stopped starts 1 restarts 0 last_end"*) ok "admin stop is graceful: SHUTDOWN, the run ends by itself" ;;
    *) bad "admin stop is graceful: SHUTDOWN, the run ends by itself" "$l" ;; esac
out=$(admin start roomy/sleeper 2>&1)
wait_for 5 state_is roomy/sleeper running
out=$(admin stop roomy/sleeper now 2>&1)
wait_for 5 state_is roomy/sleeper stopped
check "admin stop now kills at once" grep -q "script roomy/sleeper stopped starts 2 restarts 0 last_end \"killed by the broker: stopped by the operator" "$tmp/status"
# A script that never yields cannot see SHUTDOWN: killed after drain_timeout (3 s).
out=$(admin start free/spin 2>&1)
wait_for 5 grep -q '^\[free/spin w[0-9]*\] spin: up' "$O"
out=$(admin stop free/spin 2>&1)
sleep 1
check "admin stop: a busy script is still stopping within drain_timeout" state_is free/spin running
out2=$(admin stop free/spin 2>&1)
case $out2 in *"already stopping"*) ok "admin stop twice: already stopping" ;; *) bad "admin stop twice: already stopping" "$out2" ;; esac
if wait_for 10 state_is free/spin stopped &&
   grep -q 'script free/spin stopped .*last_end "killed by the broker: free/spin: did not end within drain_timeout' "$tmp/status"; then
    ok "admin stop: killed after drain_timeout when the run does not end"
else bad "admin stop: killed after drain_timeout" "$out $(grep 'free/spin' "$tmp/status")"; fi
# status --json: one JSON object, the same facts.
admin status --json > "$tmp/status.json" 2>&1
if $PY - "$tmp/status.json" > "$tmp/json.check" 2>&1 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["revision"] == 1 and d["draining"] is False and d["reloads_failed"] == 0, d
assert d["audit"]["path"].endswith("audit.jsonl") and d["audit"]["lost"] == 0, d["audit"]
t = {x["name"]: x for x in d["tenants"]}
assert t["few"]["quota_rejected"]["max_workers"] == 1 and t["few"]["max_workers"] == 1, t["few"]
assert t["tight"]["quota_rejected"]["max_connections"] >= 1, t["tight"]
assert t["flood"]["quota_rejected"]["messages_out_per_sec"] == 1, t["flood"]
assert t["sip"]["throttled"] >= 1 and t["sip"]["bytes_in"] >= 786432, t["sip"]
assert t["paced"]["messages_out"] == 61, t["paced"]
assert t["strict"]["address_denied"] >= 1 and t["strict"]["policy_denied"] == 0, t["strict"]
s = {x["name"]: x for x in t["roomy"]["scripts"]}
assert s["holder"]["state"] == "running" and s["holder"]["connections"] == 1, s["holder"]
assert isinstance(s["holder"]["pid"], int) and s["holder"]["last_end"] is None, s["holder"]
assert s["sleeper"]["state"] == "stopped" and s["sleeper"]["worker"] is None, s["sleeper"]
assert s["sleeper"]["last_end"].startswith("killed by the broker"), s["sleeper"]
c = {x["name"]: x for x in t["crashy"]["scripts"]}["crash"]
assert c["state"] == "failed" and c["starts"] == 3 and c["restarts"] == 2, c
print("%d tenants" % len(t))
EOF
then ok "admin status --json: $(cat "$tmp/json.check")"; else bad "admin status --json" "$(cat "$tmp/json.check")"; fi
out=$(admin frobnicate 2>&1); rc=$?
check "admin: unknown command is an error" test $rc = 1
out=$(admin stop nobody 2>&1); rc=$?
check "admin: unknown tenant is an error" test $rc = 1

# ---- reload ----
check "holder connection is open" grep -q '^\[roomy/holder w[0-9]*\] holder: open' "$O"
cp "$tmp/broken.conf" "$tmp/ops.conf"
out=$(admin reload 2>&1); rc=$?
if [ $rc = 1 ] && echo "$out" | grep -q "reload refused" && echo "$out" | grep -q "ops.conf:2: max_connections"; then
    ok "reload with a broken config is refused with file:line errors"
else bad "reload with a broken config is refused" "rc=$rc $out"; fi
status
check "the old configuration stays in force (revision 1)" grep -q "revision 1 .*reloads 0 ok 1 failed" "$tmp/status"
check "scripts keep running after a refused reload" grep -q "script roomy/holder running" "$tmp/status"
check "capped holders are open" sh -c "[ \$(grep -c '^\[capped/h[12] w[0-9]*\] holder: open' '$O') = 2 ]"
# New policy and a smaller capped max_connections, plus a setting that needs a restart.
write_config "rule = deny websocket.connect.url ws://127.0.0.1:$PORT/echo?holder*" "ring_bytes = 8M" 1
out=$(admin reload 2>&1); rc=$?
sleep 0.5
status
if [ $rc = 0 ] && grep -q "revision 2 " "$tmp/status" && grep -q "script roomy/holder running" "$tmp/status" &&
   grep -q "script capped/h1 running" "$tmp/status" && grep -q "script capped/h2 running" "$tmp/status"; then
    ok "reload without revoke: new revision, existing connections stay"
else bad "reload without revoke" "rc=$rc $out"; fi
if echo "$out" | grep -q "note: ring_bytes changed (4194304 -> 8388608); not applied: it takes effect after a restart" &&
   ! echo "$out" | grep -q "note: admin_socket"; then
    ok "reload names each changed setting that needs a restart"
else bad "reload names each changed setting that needs a restart" "$out"; fi
out=$(admin reload revoke 2>&1); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "2 connections revoked"; then ok "reload revoke closes the denied connection and the one over max_connections"
else bad "reload revoke" "rc=$rc $out"; fi
wait_for 5 grep -q '^\[roomy/holder w[0-9]*\] holder: closed' "$O"
l=$(line roomy/holder "holder: closed")
case $l in *"code 1008 by broker"*) ok "revoked connection ends with close code 1008" ;; *) bad "revoked connection ends with close code 1008" "$l" ;; esac
wait_for 5 grep -q '^\[capped/h[12] w[0-9]*\] holder: closed' "$O"
sleep 0.5
n13=$(grep -c '^\[capped/h[12] w[0-9]*\] holder: closed code 1013 by broker' "$O")
status
if [ "$n13" = 1 ] && [ "$(grep -c '^\[capped/h[12] w[0-9]*\] holder: closed' "$O")" = 1 ] &&
   grep -q "^tenant capped workers [0-9]*/8 connections 1/1 " "$tmp/status"; then
    ok "reload revoke over max_connections: one connection closed with 1013, the other kept"
else bad "reload revoke over max_connections" "$(grep 'capped/' "$O") $(grep 'tenant capped' "$tmp/status")"; fi

# ---- audit log, field by field ----
sleep 0.2
if $PY - "$tmp/audit.jsonl" "$PORT" "$tmp/ops.conf" > "$tmp/audit.check" 2>&1 <<'EOF'
import json, sys
path, port, conf = sys.argv[1], sys.argv[2], sys.argv[3]
recs = [json.loads(l) for l in open(path)]
keys = ["ts", "rev", "tenant", "script", "worker", "action", "url", "address", "decision", "rule", "reason"]
for r in recs:
    assert list(r.keys()) == keys, r
    assert r["url"] is None or ("?" not in r["url"] and "@" not in r["url"]), r
def find(**kw):
    for r in recs:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    raise SystemExit("no audit record with %r" % kw)
r = find(tenant="strict", action="address", decision="deny")
assert r["script"] == "addr" and r["address"] in ("127.0.0.1", "::1"), r
assert r["url"] == "ws://localhost:%s/echo" % port and r["rule"] == "allow_addresses", r
assert r["rev"] == 1 and isinstance(r["worker"], int) and "loopback" in r["reason"], r
r = find(tenant="loopy", action="address", decision="allow")
assert r["address"] in ("127.0.0.1", "::1"), r
r = find(tenant="slow", action="websocket.connect.url", decision="allow")
assert r["url"] == "ws://127.0.0.1:%s/blast" % port, r
assert r["rule"].endswith("ops.conf:35"), r
r = find(tenant="tight", action="quota", rule="max_connections")
assert r["decision"] == "deny", r
r = find(tenant="tight", action="quota", rule="connects_per_sec")
r = find(tenant="roomy", action="revoke")
assert r["rev"] == 3 and r["decision"] == "deny" and r["url"] == "ws://127.0.0.1:%s/echo" % port, r
assert r["script"] == "holder" and r["rule"].endswith("ops.conf:30"), r
r = find(tenant="capped", action="revoke")
assert r["rev"] == 3 and r["rule"] == "max_connections" and "max_connections quota of 1" in r["reason"], r
r = find(tenant="flood", action="quota")
assert r["rule"] == "messages_out_per_sec" and r["decision"] == "deny" and r["script"] == "flood", r
assert r["url"] == "ws://127.0.0.1:%s/count" % port and r["rev"] == 1, r
r = find(tenant="roomy", action="websocket.connect", decision="allow")
assert r["url"] is None and r["rule"].endswith("ops.conf:28"), r
print("%d records checked" % len(recs))
EOF
then ok "audit log: $(cat "$tmp/audit.check")"; else bad "audit log field by field" "$(cat "$tmp/audit.check")"; fi

# ---- drain ----
out=$(admin start roomy/sleeper 2>&1)
wait_for 5 state_is roomy/sleeper running
out=$(admin drain 2>&1); rc=$?
i=0; while kill -0 $serve_pid 2>/dev/null && [ $i -lt 80 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $serve_pid 2>/dev/null; then bad "drain ends the service" "$out"; kill $serve_pid
else
    wait $serve_pid; rc=$?
    if [ $rc = 0 ] && grep -q "draining: .* close code 1012" "$E" && grep -q "drained" "$E" && [ ! -e "$tmp/admin.sock" ]; then
        ok "admin drain: workers end, the service exits 0 and removes its socket"
    else bad "admin drain" "rc=$rc $(tail -3 "$E")"; fi
fi

# ---- address policy through the test's own resolver setup ----
# A private mount namespace (unprivileged user namespace) with our own
# /etc/hosts: names that resolve to loopback, to the cloud metadata address,
# and to a private plus a loopback address. A nested user namespace maps a
# non-root uid, so the workers sandbox themselves exactly as outside.
printf '127.0.0.1 rebind.test\n169.254.169.254 meta.test\n10.0.0.7 mixed.test\n127.0.0.1 mixed.test\n' > "$tmp/hosts"
if unshare -rm sh -c "mount --bind '$tmp/hosts' /etc/hosts && exec unshare --user --map-user=1000 --map-group=1000 getent hosts rebind.test" 2>/dev/null | grep -q '^127.0.0.1'; then
    for h in rebind meta mixed; do sed "s/@HOST@/$h.test/; s/@PORT@/$PORT/" tests/operators/resolve.lua > "$tmp/r_$h.lua"; done
    cat > "$tmp/r.conf" <<EOF
[broker]
admin_socket = r.sock
audit_log = r.jsonl
[tenant pub]
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://rebind.test:$PORT/* ws://meta.test:$PORT/*
[tenant lo]
allow_addresses = loopback
rule = allow websocket.connect *
rule = allow websocket.connect.url ws://rebind.test:$PORT/* ws://mixed.test:$PORT/*
[script pub/rebind]
path = r_rebind.lua
restart = never
[script pub/meta]
path = r_meta.lua
restart = never
[script lo/rebind]
path = r_rebind.lua
restart = never
[script lo/mixed]
path = r_mixed.lua
restart = never
EOF
    (cd "$tmp" && exec unshare -rm sh -c "mount --bind '$tmp/hosts' /etc/hosts && exec unshare --user --map-user=1000 --map-group=1000 '$OLDPWD/$BROKER' serve --config r.conf" > r.out 2> r.err) &
    rpid=$!
    pids="$pids $rpid"
    wait_for 20 sh -c "[ \$(grep -c '^\[[a-z]*/[a-z]* w[0-9]*\] resolve:' '$tmp/r.out') = 4 ]"
    R=$tmp/r.out
    rl() { grep "^\[$1 w[0-9]*\] resolve:" "$R" | head -n 1; }
    case $(rl pub/rebind) in *"resolve: PermissionDenied"*"rebind.test resolves to 127.0.0.1, a loopback address"*) ok "resolver: a name resolving to loopback is denied (public only)" ;;
        *) bad "resolver: a name resolving to loopback is denied" "$(rl pub/rebind) $(tail -3 "$tmp/r.err")" ;; esac
    case $(rl pub/meta) in *"resolve: PermissionDenied"*"169.254.169.254"*"link-local"*) ok "resolver: a name resolving to the metadata address is denied" ;;
        *) bad "resolver: a name resolving to the metadata address is denied" "$(rl pub/meta)" ;; esac
    case $(rl lo/rebind) in *"resolve: ok hi"*) ok "resolver: allowed for a tenant with allow_addresses = loopback" ;;
        *) bad "resolver: allowed for a tenant with allow_addresses = loopback" "$(rl lo/rebind)" ;; esac
    case $(rl lo/mixed) in *"resolve: ok hi"*) ok "resolver: a name with a private and a loopback address connects to the loopback one" ;;
        *) bad "resolver: a name with a private and a loopback address" "$(rl lo/mixed)" ;; esac
    if $PY - "$tmp/r.jsonl" > "$tmp/r.check" 2>&1 <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
addr = [(r["tenant"], r["script"], r["address"], r["decision"]) for r in recs if r["action"] == "address"]
assert ("pub", "rebind", "127.0.0.1", "deny") in addr, addr
assert ("pub", "meta", "169.254.169.254", "deny") in addr, addr
assert ("lo", "rebind", "127.0.0.1", "allow") in addr, addr
# getaddrinfo sorts 127.0.0.1 first; it is allowed and used, so 10.0.0.7 is
# never dialled (and, if it was ever checked, it must have been denied).
assert ("lo", "mixed", "127.0.0.1", "allow") in addr and ("lo", "mixed", "10.0.0.7", "allow") not in addr, addr
for r in recs:
    if r["action"] == "address":
        assert r["rule"] == "allow_addresses" and r["url"].startswith("ws://") and r["url"].endswith("/echo"), r
print("%d address records" % len(addr))
EOF
    then ok "resolver: every resolved address audited ($(cat "$tmp/r.check"))"; else bad "resolver: audit" "$(cat "$tmp/r.check")"; fi
    "$BROKER" admin --socket "$tmp/r.sock" drain > /dev/null 2>&1
    i=0; while kill -0 $rpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
else
    echo "skip: resolver setup (unprivileged user/mount namespaces unavailable); the localhost checks above still ran"
fi

# ---- quarantine after a sandbox/protocol violation (a hostile worker) ----
if [ -x "$BUILD/bad_worker" ]; then
    printf 'ready_twice ws://127.0.0.1:%s %s/bad.out\n' "$PORT" "$tmp" > "$tmp/evil.lua"
    cat > "$tmp/q.conf" <<EOF
[broker]
admin_socket = q.sock
worker = $PWD/$BUILD/bad_worker
[tenant evil]
[script evil/x]
path = evil.lua
restart = always
restart_delay = 100ms
EOF
    (cd "$tmp" && exec "$OLDPWD/$BROKER" serve --config q.conf > q.out 2> q.err) &
    qpid=$!
    pids="$pids $qpid"
    wait_for 10 sh -c "'$BROKER' admin --socket '$tmp/q.sock' status | grep -q 'script evil/x quarantined'"
    "$BROKER" admin --socket "$tmp/q.sock" status > "$tmp/qstatus" 2>&1
    sleep 0.5
    "$BROKER" admin --socket "$tmp/q.sock" status > "$tmp/qstatus2" 2>&1
    if grep -q "script evil/x quarantined starts 1 restarts 0 last_end \"protocol violation" "$tmp/qstatus2" &&
       grep -q "quarantined after a sandbox violation" "$tmp/q.err"; then
        ok "quarantine: a protocol violation is never restarted automatically"
    else bad "quarantine" "$(cat "$tmp/qstatus2") $(tail -3 "$tmp/q.err")"; fi
    kill -TERM $qpid
    i=0; while kill -0 $qpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    check "SIGTERM drains the service" sh -c "! kill -0 $qpid 2>/dev/null"
else
    echo "skip: quarantine ($BUILD/bad_worker not built)"
fi

# ---- a script flooding denied connects cannot flood the audit log ----
cat > "$tmp/denyflood.lua" <<LUA
for i = 1, 3000 do
    local c, err = websocket.connect("ws://127.0.0.1:$PORT/nope")
    assert(not c and err:kind() == errors.PERMISSION_DENIED)
end
time.sleep("1200ms") -- a denial in the next second writes the summary
websocket.connect("ws://127.0.0.1:$PORT/nope")
print("denyflood: done")
LUA
cat > "$tmp/d.conf" <<CONF
[broker]
admin_socket = d.sock
audit_log = d.jsonl
[tenant noisy]
rule = allow websocket.connect *
[script noisy/flood]
path = denyflood.lua
CONF
(cd "$tmp" && exec "$OLDPWD/$BROKER" serve --config d.conf > d.out 2> d.err) &
dpid=$!
pids="$pids $dpid"
wait_for 20 grep -q 'denyflood: done' "$tmp/d.out"
sleep 0.3
denials=$(grep -c '"decision":"deny"' "$tmp/d.jsonl" 2>/dev/null)
summary=$(grep -c '"action":"audit".*further denials of this worker were not logged' "$tmp/d.jsonl" 2>/dev/null)
if grep -q 'denyflood: done' "$tmp/d.out" && [ "${summary:-0}" -ge 1 ] && [ "${denials:-0}" -lt 1000 ]; then
    ok "audit: 3000 denied connects in a burst give $denials records, summarised"
else
    bad "audit flood" "denials=$denials summary=$summary $(tail -3 "$tmp/d.err")"
fi
kill -TERM $dpid 2>/dev/null
i=0; while kill -0 $dpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

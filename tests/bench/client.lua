-- Our client in the end-to-end benchmarks: this script runs in a sandboxed
-- worker through the real broker against tests/bench/bench_server.
-- tests/bench/run.py replaces @PORT@ @MODE@ @SIZE@ @SECS@ @DEPTH@ @DEFLATE@.
-- Modes: recv (server blasts; count for SECS), echo (one in flight, latency
-- per round trip), pipe (DEPTH in flight), send (to the sink, then REPORT).
-- Prints "RESULT msgs= bytes= secs= p50_us= p99_us=", then waits a moment so
-- the driver can read the broker's and the worker's CPU time and peak memory.
local port, mode, size = @PORT@, "@MODE@", @SIZE@
local secs, depth, deflate = @SECS@, @DEPTH@, @DEFLATE@
local base = "ws://127.0.0.1:" .. port
-- A channel of 256 messages, but at most about 16 MiB of them.
local cap = math.max(4, math.min(256, (16 * 1024 * 1024) // math.max(size, 1)))
local opts = { read_limit = 2 * 1024 * 1024, channel_capacity = cap }
if deflate then
    opts.compression = websocket.COMPRESSION.NO_CONTEXT
end
local now = time.now
local limit = math.floor(secs * 1e9)
local msgs, bytes, elapsed = 0, 0, 0
local p50, p99 = 0, 0

if mode == "recv" then
    local c = assert(websocket.connect(base .. "/blast?size=" .. size .. (deflate and "&deflate=1" or ""), opts))
    local ch = c:channel()
    local receive = ch.receive
    local t0 = now()
    while true do
        local m = receive(ch)
        if not m then break end
        msgs = msgs + 1
        bytes = bytes + #m.data
        if msgs & 255 == 0 and now():sub(t0) >= limit then break end
    end
    elapsed = now():sub(t0)
elseif mode == "echo" or mode == "pipe" then
    local c = assert(websocket.connect(base .. "/echo", opts))
    local ch = c:channel()
    local receive = ch.receive
    local payload = string.rep("x", size)
    local k = mode == "echo" and 1 or depth
    local lat = {}
    local t0 = now()
    for _ = 1, k do
        assert(c:send(payload, websocket.BINARY))
    end
    local inflight, sending, ts = k, true, t0
    local send, BIN = c.send, websocket.BINARY
    while inflight > 0 do
        local m = assert(receive(ch))
        inflight = inflight - 1
        msgs = msgs + 1
        bytes = bytes + #m.data
        local t = now()
        local dt = t:sub(ts)
        if k == 1 then lat[#lat + 1] = dt end
        if sending and t:sub(t0) >= limit then sending = false end
        if sending then
            ts = t
            assert(send(c, payload, BIN))
            inflight = inflight + 1
        end
    end
    elapsed = now():sub(t0)
    if #lat > 0 then
        table.sort(lat)
        p50 = lat[#lat // 2 + 1] / 1000
        p99 = lat[math.floor(#lat * 0.99) + 1] / 1000
    end
elseif mode == "send" then
    local c = assert(websocket.connect(base .. "/sink", opts))
    local payload = string.rep("x", size)
    local send, BIN = c.send, websocket.BINARY
    local t0 = now()
    local n = 0
    repeat
        for _ = 1, 64 do
            send(c, payload, BIN)
        end
        n = n + 64
    until now():sub(t0) >= limit
    assert(c:send("REPORT"))
    local m = assert(c:channel():receive())
    elapsed = now():sub(t0)
    local cnt, b = m.data:match("count=(%d+) bytes=(%d+)")
    msgs, bytes = tonumber(cnt), tonumber(b)
    assert(msgs == n, "server counted " .. tostring(msgs) .. " of " .. n)
end
print(string.format("RESULT msgs=%d bytes=%d secs=%.6f p50_us=%.1f p99_us=%.1f", msgs, bytes,
    elapsed / 1e9, p50, p99))
time.sleep("300ms")

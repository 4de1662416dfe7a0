-- Peer client of the end-to-end benchmarks: Debian's lua-http (run with
-- lua5.1, the Lua version whose dependencies Debian packages completely)
-- against tests/bench/bench_server. Same command line and RESULT line as
-- tests/bench/ref_client.c (modes recv, echo, pipe, send; no compression).
local websocket = require "http.websocket"
local monotime = require "cqueues".monotime

local a = { port = 0, mode = "recv", size = 16, secs = 1, depth = 100 }
local i = 1
while i <= #arg do
    local k = arg[i]:gsub("^%-%-", "")
    if k == "deflate" then
        io.stderr:write("luahttp_client: no permessage-deflate in lua-http\n")
        os.exit(2)
    end
    a[k] = k == "mode" and arg[i + 1] or tonumber(arg[i + 1])
    i = i + 2
end
local route = ({ recv = "/blast", send = "/sink" })[a.mode] or "/echo"
local ws = websocket.new_from_uri(("ws://127.0.0.1:%d%s?size=%d"):format(a.port, route, a.size))
assert(ws:connect(10))
local msgs, bytes, lat = 0, 0, {}
local t0 = monotime()
local stop = t0 + a.secs
local payload = ("x"):rep(a.size)
if a.mode == "recv" then
    while true do
        local m = assert(ws:receive())
        msgs = msgs + 1
        bytes = bytes + #m
        if msgs % 256 == 0 and monotime() >= stop then break end
    end
elseif a.mode == "echo" or a.mode == "pipe" then
    local k = a.mode == "echo" and 1 or a.depth
    for _ = 1, k do assert(ws:send(payload, "binary")) end
    local inflight, sending, ts = k, true, t0
    while inflight > 0 do
        local m = assert(ws:receive())
        inflight = inflight - 1
        msgs = msgs + 1
        bytes = bytes + #m
        local t = monotime()
        if k == 1 then lat[#lat + 1] = t - ts end
        if sending and t >= stop then sending = false end
        if sending then
            ts = t
            assert(ws:send(payload, "binary"))
            inflight = inflight + 1
        end
    end
else
    repeat
        for _ = 1, 64 do assert(ws:send(payload, "binary")) end
    until monotime() >= stop
    assert(ws:send("REPORT", "text"))
    local rep = assert(ws:receive())
    msgs, bytes = rep:match("count=(%d+) bytes=(%d+)")
    msgs, bytes = tonumber(msgs), tonumber(bytes)
end
local t1 = monotime()
local p50, p99 = 0, 0
if #lat > 0 then
    table.sort(lat)
    p50 = lat[math.floor(#lat / 2) + 1] * 1e6
    p99 = lat[math.floor(#lat * 0.99) + 1] * 1e6
end
print(("RESULT msgs=%d bytes=%d secs=%.6f p50_us=%.1f p99_us=%.1f"):format(msgs, bytes, t1 - t0, p50, p99))
os.exit(0)

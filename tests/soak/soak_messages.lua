-- Soak: a million messages received through one connection, then a million
-- sent through one connection, in one worker. Prints `MARK <name>` and holds
-- still for a moment at fixed points so tests/soak/run.sh can sample the
-- broker's and the worker's resident memory from /proc.

local N = 1000000
local function mark(name)
    collectgarbage()
    print("MARK " .. name)
    time.sleep("400ms")
end

mark("start")
local c = assert(websocket.connect("@C@/blast?n=" .. N .. "&size=16&type=text", { channel_capacity = 64 }))
local ch = c:channel()
local n, t0 = 0, time.now()
while true do
    local m = assert(ch:receive())
    if m.data == "END" then break end
    assert(#m.data == 16)
    n = n + 1
    if n == N // 5 then mark("recv_warm") elseif n == N // 2 then mark("recv_mid") end
end
assert(n == N, "received " .. n)
print(string.format("# received %d messages in %d ms", n, time.now():sub(t0) // 1000000))
c:close()
mark("recv_end")

c = assert(websocket.connect("@C@/count"))
t0 = time.now()
for i = 1, N do
    assert(c:send("0123456789abcdef"))
    if i == N // 5 then mark("send_warm") elseif i == N // 2 then mark("send_mid") end
end
assert(c:send("REPORT"))
local m = assert(c:channel():receive())
assert(m.data == string.format("count=%d bytes=%d", N, N * 16), m.data)
print(string.format("# sent %d messages in %d ms", N, time.now():sub(t0) // 1000000))
c:close()
mark("send_end")
print("SOAK DONE")

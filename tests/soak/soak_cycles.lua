-- Soak: a thousand connect / send / receive / close cycles in one worker.
-- Prints `MARK <name>` and holds still at fixed points so tests/soak/run.sh
-- can sample the broker's and the worker's resident memory from /proc.

local N = 1000
local function mark(name)
    collectgarbage()
    print("MARK " .. name)
    time.sleep("400ms")
end

mark("start")
local t0 = time.now()
for i = 1, N do
    local c = assert(websocket.connect("@C@/echo"))
    assert(c:send("cycle " .. i))
    assert(c:channel():receive().data == "cycle " .. i)
    assert(c:close())
    if i == N // 5 then mark("warm") elseif i == N // 2 then mark("mid") end
end
print(string.format("# %d connect/close cycles in %d ms", N, time.now():sub(t0) // 1000000))
mark("end")
print("SOAK DONE")

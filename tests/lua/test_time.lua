-- The `time` module (lua/time.c): constants, durations, now/sub/add, sleep,
-- after, timers, tickers, and their ordering on the scheduler.

local MS = time.MILLISECOND

local function raises(fn, pattern)
    local ok, msg = pcall(fn)
    assert(not ok, "expected an error")
    if pattern then
        assert(string.find(tostring(msg), pattern, 1, true), "unexpected error: " .. tostring(msg))
    end
end

local function elapsed(t0)
    return time.now():sub(t0)
end

test("constants are integers in nanoseconds", function()
    assert(time.NANOSECOND == 1)
    assert(time.MICROSECOND == 1000)
    assert(time.MILLISECOND == 1000000)
    assert(time.SECOND == 1000000000)
    assert(time.MINUTE == 60 * time.SECOND)
    assert(time.HOUR == 3600 * time.SECOND)
    assert(math.type(time.HOUR) == "integer")
    assert(require("time") == time)
end)

test("module table is read-only", function()
    raises(function() time.SECOND = 1 end, "read-only")
    raises(function() time.sleep = print end, "read-only")
    assert(time.SECOND == 1000000000)
end)

test("now: unix, unix_nano, tostring", function()
    local t = time.now()
    local s, ns = t:unix(), t:unix_nano()
    assert(math.type(s) == "integer" and math.type(ns) == "integer")
    assert(ns // 1000000000 == s)
    assert(math.abs(s - os.time()) <= 2)
    assert(tostring(t):match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$"), tostring(t))
end)

test("sub is monotonic and add shifts both clocks", function()
    local a = time.now()
    local b = time.now()
    assert(b:sub(a) >= 0)
    local c = a:add(5 * time.SECOND)
    assert(c:sub(a) == 5 * time.SECOND)
    assert(c:unix_nano() - a:unix_nano() == 5 * time.SECOND)
    assert(a:add("1m30s"):sub(a) == 90 * time.SECOND)
    assert(a:add(-time.SECOND):sub(a) == -time.SECOND)
    assert(a < c and c > a and a == a:add(0) and a <= a)
    raises(function() a:add("bogus") end)
    raises(function() a:sub(5) end)
end)

test("sleep waits at least the duration (number and string)", function()
    local t0 = time.now()
    time.sleep(20 * MS)
    local d = elapsed(t0)
    assert(d >= 20 * MS and d < 2000 * MS, tostring(d))
    t0 = time.now()
    time.sleep("15ms")
    assert(elapsed(t0) >= 15 * MS)
    t0 = time.now()
    time.sleep(0)
    assert(elapsed(t0) < 100 * MS)
end)

test("bad durations raise", function()
    raises(function() time.sleep(-1) end)
    raises(function() time.sleep("-1s") end)
    raises(function() time.sleep("10 parsecs") end)
    raises(function() time.sleep({}) end)
    raises(function() time.after("x") end)
    raises(function() time.ticker(0) end, "positive")
    raises(function() time.timer(nil) end)
end)

test("sleeping tasks wake in deadline order", function()
    local order = {}
    local done = channel.new(3)
    for _, d in ipairs({30, 10, 20}) do
        coroutine.spawn(function()
            time.sleep(d * MS)
            order[#order + 1] = d
            done:send(true)
        end)
    end
    for _ = 1, 3 do done:receive() end
    assert(order[1] == 10 and order[2] == 20 and order[3] == 30, table.concat(order, ","))
end)

test("after delivers one Time then closes", function()
    local t0 = time.now()
    local ch = time.after(10 * MS)
    local v, ok = ch:receive()
    assert(ok and getmetatable(v) == false and v:unix_nano() > 0)
    assert(v:sub(t0) >= 10 * MS)
    local v2, ok2 = ch:receive()
    assert(v2 == nil and ok2 == false)
end)

test("after works in select as a timeout", function()
    local never = channel.new()
    local timeout = time.after("10ms")
    local r = channel.select{never:case_receive(), timeout:case_receive()}
    assert(r.channel == timeout and r.ok)
end)

test("shorter after wins a select", function()
    local slow, fast = time.after(200 * MS), time.after(5 * MS)
    local r = channel.select{slow:case_receive(), fast:case_receive()}
    assert(r.channel == fast)
end)

test("after(0) fires on the next scheduler round", function()
    local ch = time.after(0)
    local v, ok = ch:receive()
    assert(ok)
end)

test("an unreferenced after still fires", function()
    local done = channel.new(1)
    coroutine.spawn(function()
        local _, ok = time.after(5 * MS):receive()
        done:send(ok)
    end)
    collectgarbage("collect")
    assert(done:receive() == true)
end)

test("timer: channel, stop, reset", function()
    local t = time.timer(10 * MS)
    local ch = t:channel()
    assert(ch == t:channel(), "same channel every time")
    local v, ok = ch:receive()
    assert(ok and v)
    assert(t:stop() == false, "stop after firing reports false")
    -- a timer's channel is not closed after firing
    local r = channel.select{ch:case_receive(), default = true}
    assert(r.default)

    local t2 = time.timer(50 * MS)
    assert(t2:stop() == true)
    local r2 = channel.select{t2:channel():case_receive(), time.after(80 * MS):case_receive()}
    assert(r2.channel ~= t2:channel(), "a stopped timer must not fire")

    local t3 = time.timer(time.HOUR)
    local t0 = time.now()
    assert(t3:reset(10 * MS) == true)
    t3:channel():receive()
    local d = elapsed(t0)
    assert(d >= 10 * MS and d < time.SECOND, tostring(d))
    assert(t3:reset("5ms") == false, "reset of a fired timer reports false")
    t3:channel():receive()
end)

test("ticker ticks repeatedly and stops", function()
    local tk = time.ticker(5 * MS)
    local t0 = time.now()
    for i = 1, 4 do
        local v, ok = tk:channel():receive()
        assert(ok)
    end
    assert(elapsed(t0) >= 20 * MS)
    assert(tk:stop() == true)
    time.sleep(15 * MS)
    -- at most one tick was buffered before the stop
    local n = 0
    while true do
        local r = channel.select{tk:channel():case_receive(), default = true}
        if r.default then break end
        n = n + 1
    end
    assert(n <= 1, tostring(n))
end)

test("a slow ticker receiver sees dropped ticks, not a burst", function()
    local tk = time.ticker(2 * MS)
    time.sleep(30 * MS)
    local n = 0
    while true do
        local r = channel.select{tk:channel():case_receive(), default = true}
        if r.default then break end
        n = n + 1
    end
    tk:stop()
    assert(n == 1, "buffered ticks: " .. n)
end)

test("timers and tasks interleave: heartbeat pattern", function()
    local msgs = channel.new(10)
    coroutine.spawn(function()
        for i = 1, 5 do
            time.sleep(2 * MS)
            msgs:send(i)
        end
        msgs:close()
    end)
    local got, beats = 0, 0
    local hb = time.after(1 * MS)
    while true do
        local r = channel.select{msgs:case_receive(), hb:case_receive()}
        if r.channel == hb then
            beats = beats + 1
            hb = time.after(1 * MS)
        elseif not r.ok then
            break
        else
            got = got + 1
        end
    end
    assert(got == 5 and beats >= 1, got .. " " .. beats)
end)

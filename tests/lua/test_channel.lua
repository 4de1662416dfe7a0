-- The `channel` module and the scheduler (lua/channel.c, lua/rt.c): Go
-- channel semantics, select, fairness, tasks and parking.

local function raises(fn, pattern)
    local ok, msg = pcall(fn)
    assert(not ok, "expected an error")
    if pattern then
        assert(string.find(tostring(msg), pattern, 1, true), "unexpected error: " .. tostring(msg))
    end
end

test("module is global and required", function()
    assert(require("channel") == channel)
    assert(type(channel.new) == "function" and type(channel.select) == "function")
end)

test("unbuffered send blocks until a receiver takes it (rendezvous)", function()
    local ch = channel.new()
    local log = {}
    coroutine.spawn(function()
        log[#log + 1] = "send start"
        ch:send("x")
        log[#log + 1] = "send done"
    end)
    time.sleep(0) -- let the sender run: it must be blocked now
    time.sleep(0)
    assert(#log == 1 and log[1] == "send start", table.concat(log, ","))
    local v, ok = ch:receive()
    assert(v == "x" and ok == true)
    log[#log + 1] = "received"
    time.sleep(0)
    assert(log[2] == "received" and log[3] == "send done", table.concat(log, ","))
end)

test("unbuffered receive blocks until a sender comes", function()
    local ch = channel.new(0)
    local got
    coroutine.spawn(function() got = {ch:receive()} end)
    time.sleep(0)
    assert(got == nil)
    ch:send(7)
    time.sleep(0)
    assert(got[1] == 7 and got[2] == true)
end)

test("buffered channel keeps order and blocks when full", function()
    local ch = channel.new(3)
    ch:send(1); ch:send(2); ch:send(3)
    assert(ch:len() == 3 and ch:cap() == 3)
    local fourth = false
    coroutine.spawn(function() ch:send(4); fourth = true end)
    time.sleep(0)
    assert(not fourth, "send on a full channel must block")
    assert(ch:receive() == 1)
    time.sleep(0)
    assert(fourth, "the parked sender moves into the freed slot")
    for want = 2, 4 do
        local v, ok = ch:receive()
        assert(v == want and ok, tostring(v))
    end
    assert(ch:len() == 0)
end)

test("ring buffer wraps around many times", function()
    local ch = channel.new(4)
    local n = 0
    for round = 1, 50 do
        for i = 1, 3 do ch:send(round * 10 + i) end
        for i = 1, 3 do
            local v = ch:receive()
            assert(v == round * 10 + i)
            n = n + 1
        end
    end
    assert(n == 150)
end)

test("nil and false values travel", function()
    local ch = channel.new(2)
    ch:send(nil); ch:send(false)
    local v, ok = ch:receive()
    assert(v == nil and ok == true)
    v, ok = ch:receive()
    assert(v == false and ok == true)
end)

test("close: buffered values drain, then nil,false", function()
    local ch = channel.new(2)
    ch:send("a"); ch:send("b")
    ch:close()
    assert(select("#", ch:receive()) == 2)
    local v, ok = ch:receive(); assert(v == "b" and ok)
    v, ok = ch:receive(); assert(v == nil and ok == false)
    v, ok = ch:receive(); assert(v == nil and ok == false)
end)

test("closing twice is a no-op", function()
    local ch = channel.new()
    ch:close()
    ch:close()
    local v, ok = ch:receive()
    assert(v == nil and ok == false)
end)

test("send on a closed channel raises", function()
    local ch = channel.new(1)
    ch:close()
    raises(function() ch:send(1) end, "send on closed channel")
end)

test("close wakes parked receivers and fails parked senders", function()
    local ch = channel.new()
    local results = {}
    for i = 1, 3 do
        coroutine.spawn(function()
            local r = {ch:receive()}
            results[#results + 1] = r
        end)
    end
    local sender_err
    local ch2 = channel.new()
    coroutine.spawn(function()
        local ok, e = pcall(ch2.send, ch2, 1)
        sender_err = ok and "no error" or tostring(e)
    end)
    time.sleep(0)
    ch:close()
    ch2:close()
    time.sleep(0)
    assert(#results == 3)
    for _, r in ipairs(results) do assert(r[1] == nil and r[2] == false) end
    assert(sender_err and sender_err:find("send on closed channel", 1, true), sender_err)
end)

test("many tasks, many messages, FIFO per sender", function()
    local ch = channel.new(5)
    local N, M = 10, 200
    for s = 1, N do
        coroutine.spawn(function()
            for i = 1, M do ch:send({s, i}) end
        end)
    end
    local last = {}
    for _ = 1, N * M do
        local m = ch:receive()
        assert((last[m[1]] or 0) + 1 == m[2], "out of order")
        last[m[1]] = m[2]
    end
end)

test("select: ready receive case", function()
    local a, b = channel.new(1), channel.new(1)
    b:send("hello")
    local r = channel.select{a:case_receive(), b:case_receive()}
    assert(r.channel == b and r.value == "hello" and r.ok == true)
end)

test("select: send case", function()
    local a = channel.new(1)
    local r = channel.select{a:case_send("v")}
    assert(r.channel == a and r.ok == true and r.value == nil)
    assert(a:receive() == "v")
end)

test("select: default when nothing is ready", function()
    local a = channel.new()
    local r = channel.select{a:case_receive(), default = true}
    assert(r.default == true and r.ok == true and r.channel == nil)
    r = channel.select{default = true}
    assert(r.default == true)
end)

test("select: closed channel is ready with ok=false", function()
    local a, b = channel.new(), channel.new()
    a:close()
    local r = channel.select{a:case_receive(), b:case_receive()}
    assert(r.channel == a and r.ok == false and r.value == nil)
end)

test("select: send case on a closed channel raises", function()
    local a = channel.new()
    a:close()
    raises(function() channel.select{a:case_send(1)} end, "send on closed channel")
end)

test("select: blocks, then the first counterpart wins and siblings are removed", function()
    local a, b, c = channel.new(), channel.new(), channel.new()
    local r
    coroutine.spawn(function() r = channel.select{a:case_receive(), b:case_receive(), c:case_send("out")} end)
    time.sleep(0)
    assert(r == nil)
    b:send("via b")
    time.sleep(0)
    assert(r.channel == b and r.value == "via b" and r.ok)
    -- the select's other cases are gone: a send on a now has no receiver
    local r2 = channel.select{a:case_send(1), c:case_receive(), default = true}
    assert(r2.default, "a stale select waiter was left behind")
end)

test("select: parked send case delivers to a later receiver", function()
    local a, b = channel.new(), channel.new()
    local r
    coroutine.spawn(function() r = channel.select{a:case_send("A"), b:case_send("B")} end)
    time.sleep(0)
    local v, ok = b:receive()
    assert(v == "B" and ok)
    time.sleep(0)
    assert(r.channel == b and r.ok)
    local r2 = channel.select{a:case_receive(), default = true}
    assert(r2.default, "sibling send case was not removed")
end)

test("select: close wakes a parked select with ok=false", function()
    local a, b = channel.new(), channel.new()
    local r
    coroutine.spawn(function() r = channel.select{a:case_receive(), b:case_receive()} end)
    time.sleep(0)
    a:close()
    time.sleep(0)
    assert(r.channel == a and r.ok == false)
end)

test("select: same channel in two cases", function()
    local a = channel.new(1)
    a:send(5)
    local r = channel.select{a:case_receive(), a:case_receive()}
    assert(r.channel == a and r.value == 5)
end)

test("select: fairness between two always-ready channels", function()
    local a, b = channel.new(1), channel.new(1)
    local wins = {[a] = 0, [b] = 0}
    a:send(1); b:send(2)
    local cases = {a:case_receive(), b:case_receive()}
    for _ = 1, 2000 do
        local r = channel.select(cases)
        wins[r.channel] = wins[r.channel] + 1
        r.channel:send(1) -- keep both ready
    end
    assert(wins[a] >= 600 and wins[b] >= 600, ("a=%d b=%d"):format(wins[a], wins[b]))
end)

test("select: fairness among three ready channels including a closed one", function()
    local a, b, c = channel.new(1), channel.new(1), channel.new()
    c:close()
    local wins = {[a] = 0, [b] = 0, [c] = 0}
    a:send(1); b:send(1)
    for _ = 1, 3000 do
        local r = channel.select{a:case_receive(), b:case_receive(), c:case_receive()}
        wins[r.channel] = wins[r.channel] + 1
        if r.channel ~= c then r.channel:send(1) end
    end
    for ch, n in pairs(wins) do assert(n >= 700, tostring(n)) end
end)

test("select: bad arguments raise", function()
    raises(function() channel.select() end)
    raises(function() channel.select{1} end, "not a channel case")
    raises(function() channel.select{{}} end, "not a channel case")
end)

test("channel.new argument checks", function()
    raises(function() channel.new(-1) end)
    raises(function() channel.new(1.5) end)
    raises(function() channel.new("x") end)
    raises(function() channel.new(1 << 40) end)
end)

test("methods check self", function()
    local ch = channel.new()
    raises(function() ch.send({}, 1) end)
    raises(function() ch.receive(1) end)
    raises(function() ch.close(nil) end)
end)

test("tostring and metatable are safe", function()
    local ch = channel.new(2)
    assert(tostring(ch):find("channel", 1, true))
    assert(getmetatable(ch) == false)
    raises(function() ch.send = nil end)
end)

test("blocking inside pcall works and resumes", function()
    local ch = channel.new()
    coroutine.spawn(function() time.sleep("1ms"); ch:send("late") end)
    local ok, v = pcall(function() return ch:receive() end)
    assert(ok and v == "late")
end)

test("blocking inside a nested coroutine parks the whole task", function()
    local ch = channel.new()
    local gen = coroutine.wrap(function()
        for i = 1, 3 do
            coroutine.yield((ch:receive()))
        end
    end)
    coroutine.spawn(function()
        for i = 1, 3 do ch:send(i * 11) end
    end)
    assert(gen() == 11)
    assert(gen() == 22)
    assert(gen() == 33)
    -- and through coroutine.resume
    local co = coroutine.create(function(x)
        local v = ch:receive()
        return x + v
    end)
    coroutine.spawn(function() ch:send(5) end)
    local ok, sum = coroutine.resume(co, 10)
    assert(ok and sum == 15, tostring(sum))
end)

test("a parked nested coroutine cannot be resumed or closed by another task", function()
    local ch = channel.new()
    local co = coroutine.create(function() return ch:receive() end)
    local other_res
    coroutine.spawn(function()
        time.sleep(0)
        other_res = {coroutine.resume(co)}
        local ok = pcall(coroutine.close, co)
        other_res.close_ok = ok
        ch:send("v")
    end)
    local ok, v = coroutine.resume(co)
    assert(ok and v == "v")
    assert(other_res[1] == false and other_res.close_ok == false)
end)

test("blocking across a C boundary raises cleanly", function()
    local ch = channel.new()
    raises(function()
        table.sort({3, 2, 1}, function(a, b) ch:receive(); return a < b end)
    end, "C-call boundary")
    -- nothing was left behind on ch
    local r = channel.select{ch:case_send(1), default = true}
    assert(r.default)
end)

test("tasks cannot be resumed by the script", function()
    local me = coroutine.running()
    local ok, e = coroutine.resume(me)
    assert(not ok and tostring(e):find("task", 1, true), tostring(e))
    raises(function() coroutine.close(me) end, "task")
end)

test("coroutine.yield in a task lets other tasks run", function()
    local order = {}
    coroutine.spawn(function() order[#order + 1] = "other" end)
    coroutine.yield()
    assert(order[1] == "other")
end)

test("spawn passes arguments and checks its function", function()
    local ch = channel.new(1)
    coroutine.spawn(function(a, b) ch:send(a + b) end, 2, 3)
    assert(ch:receive() == 5)
    raises(function() coroutine.spawn(42) end)
end)

test("an error in a task does not stop the others", function()
    local ch = channel.new(1)
    coroutine.spawn(function() error("task failure (expected in this test)") end)
    coroutine.spawn(function() ch:send("still running") end)
    assert(ch:receive() == "still running")
end)

test("ping-pong between two tasks", function()
    local ping, pong = channel.new(), channel.new()
    coroutine.spawn(function()
        while true do
            local v, ok = ping:receive()
            if not ok then break end
            pong:send(v + 1)
        end
    end)
    local v = 0
    for _ = 1, 10000 do
        ping:send(v)
        v = pong:receive()
    end
    ping:close()
    assert(v == 10000)
end)

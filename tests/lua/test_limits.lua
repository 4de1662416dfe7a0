-- Limits that must NOT end a script (lua/rt.c). The fatal cases (memory cap,
-- CPU budget, deadlock) end the run, so they live in tests/lua/fatal/ and run
-- in luarun's expect mode (see tests/run-lua.sh).

local function raises(fn, pattern)
    local ok, msg = pcall(fn)
    assert(not ok, "expected an error")
    if pattern then
        assert(string.find(tostring(msg), pattern, 1, true), "unexpected error: " .. tostring(msg))
    end
end

test("garbage is collected before the memory cap is declared hit", function()
    -- allocates far more than the cap in total, but holds little at a time
    for i = 1, 24 do
        local s = string.rep("x", (4 << 20) + i)
        assert(#s > 0)
    end
    local kb = collectgarbage("count")
    assert(kb < 64 * 1024, "count " .. kb)
end)

test("a big but allowed allocation works", function()
    local s = string.rep("y", 8 << 20)
    assert(#s == 8 << 20)
    s = nil
    collectgarbage()
end)

test("an impossible string size is an ordinary error", function()
    raises(function() return string.rep("x", math.maxinteger) end, "too large")
end)

test("stack overflow is an ordinary, catchable error", function()
    local function f(n) return f(n + 1) + 1 end
    local ok, err = pcall(f, 1)
    assert(not ok and tostring(err):find("stack overflow", 1, true), tostring(err))
    -- the task still works afterwards
    local ch = channel.new(1)
    ch:send(1)
    assert(ch:receive() == 1)
end)

test("error values pass through pcall unchanged", function()
    local obj = {}
    local ok, e = pcall(error, obj)
    assert(not ok and e == obj)
    local ok2, e2 = pcall(error)
    assert(not ok2 and e2 == nil)
end)

test("many tasks can park and finish", function()
    local gate = channel.new()
    local done = channel.new(1000)
    for i = 1, 1000 do
        coroutine.spawn(function()
            gate:receive()
            done:send(i)
        end)
    end
    time.sleep(0)
    gate:close()
    local sum = 0
    for _ = 1, 1000 do sum = sum + done:receive() end
    assert(sum == 1000 * 1001 // 2)
end)

test("many timers", function()
    local done = channel.new(500)
    for i = 1, 500 do
        coroutine.spawn(function()
            time.sleep((i % 7) * time.MILLISECOND)
            done:send(true)
        end)
    end
    for _ = 1, 500 do done:receive() end
end)

test("select with many cases", function()
    local chans, cases = {}, {}
    for i = 1, 300 do
        chans[i] = channel.new()
        cases[i] = chans[i]:case_receive()
    end
    coroutine.spawn(function() chans[217]:send("hit") end)
    local r = channel.select(cases)
    assert(r.channel == chans[217] and r.value == "hit")
    local too_many = {}
    for i = 1, 1025 do too_many[i] = chans[1]:case_receive() end
    raises(function() channel.select(too_many) end, "too many cases")
end)

test("blocking outside the scheduler's reach is refused, not hung", function()
    local ch = channel.new()
    -- Lua 5.4 metamethods called from Lua code may yield: this one parks
    local t = setmetatable({}, {__index = function() return ch:receive() end})
    coroutine.spawn(function() ch:send("from metamethod") end)
    assert(t.x == "from metamethod")
    -- a library callback called from C cannot yield
    raises(function() string.gsub("a", "a", function() time.sleep(0) end) end, "C-call boundary")
    raises(function() table.sort({1, 2, 3}, function(a, b) ch:receive() end) end)
    -- nothing was left parked on ch by the refused calls
    assert(channel.select{ch:case_send(1), default = true}.default)
end)

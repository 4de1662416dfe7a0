-- The script environment (lua/rt.c): an allow-list; every escape attempt
-- here must fail, and what scripts legitimately use must keep working.

local function raises(fn, pattern)
    local ok, msg = pcall(fn)
    assert(not ok, "expected an error")
    if pattern then
        assert(string.find(tostring(msg), pattern, 1, true), "unexpected error: " .. tostring(msg))
    end
    return msg
end

test("no io, debug, package, dofile, loadfile, warn", function()
    assert(io == nil)
    assert(debug == nil)
    assert(package == nil)
    assert(dofile == nil)
    assert(loadfile == nil)
    assert(loadstring == nil)
    assert(warn == nil)
    assert(newproxy == nil)
end)

test("os has only time and clock", function()
    assert(type(os.time) == "function" and type(os.clock) == "function")
    assert(os.execute == nil and os.getenv == nil and os.exit == nil)
    assert(os.remove == nil and os.rename == nil and os.tmpname == nil and os.date == nil)
    assert(os.setlocale == nil)
    local n = 0
    for k in pairs(os) do n = n + 1 end
    assert(n == 2, "os has " .. n .. " fields")
    assert(math.type(os.time()) == "integer")
    assert(os.time{year = 2020, month = 1, day = 1, hour = 12} > 0)
    raises(function() os.execute = function() end end, "read-only")
    raises(function() return os.execute("true") end)
    raises(function() return os.getenv("HOME") end)
end)

test("require serves only the runtime's modules", function()
    for _, name in ipairs({"channel", "time", "errors", "json"}) do
        assert(require(name) == _G[name], name)
    end
    for _, name in ipairs({"os", "io", "debug", "string", "package", "socket", "lfs",
                           "ffi", "posix", "./x", "/usr/lib/x86_64-linux-gnu/liblua5.4.so"}) do
        raises(function() require(name) end, "not found")
    end
    raises(function() require() end)
end)

test("load refuses binary chunks and accepts text", function()
    local f = load("return 1 + 1")
    assert(f() == 2)
    local g = load("return x", "chunk", "t", {x = 5})
    assert(g() == 5)
    -- a precompiled chunk starts with ESC 'Lua'
    local bin = "\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86"
    local h, err = load(bin)
    assert(h == nil and err, "binary chunk loaded")
    h, err = load(bin, "b", "b")
    assert(h == nil and tostring(err):find("binary", 1, true))
    h, err = load(bin, "bt", "bt")
    assert(h == nil)
    local parts = {bin:sub(1, 4), bin:sub(5)}
    local i = 0
    h, err = load(function() i = i + 1; return parts[i] end)
    assert(h == nil, "binary chunk via reader loaded")
    raises(function() load("return 1", "x", "q") end, "mode")
end)

test("string.dump is gone", function()
    assert(string.dump == nil)
    assert(("x").dump == nil)
end)

test("library tables are read-only", function()
    raises(function() string.upper = function() return "pwned" end end, "read-only")
    raises(function() string.newfield = 1 end, "read-only")
    raises(function() table.insert = nil end, "read-only")
    raises(function() math.pi = 3 end, "read-only")
    raises(function() math.huge = 0 end, "read-only")
    raises(function() coroutine.spawn = nil end, "read-only")
    raises(function() utf8.char = nil end, "read-only")
    raises(function() channel.new = nil end, "read-only")
    raises(function() json.encode = nil end, "read-only")
    raises(function() errors.new = nil end, "read-only")
    assert(("abc"):upper() == "ABC" and math.pi > 3.14)
end)

test("table functions cannot write library tables", function()
    raises(function() table.insert(string, "x") end)
    raises(function() table.move({1, 2}, 1, 2, 1, math) end)
    assert(math[1] == nil)
end)

test("rawset on library tables fails", function()
    for _, lib in ipairs({string, table, math, os, coroutine, utf8, channel, time, json, errors}) do
        raises(function() rawset(lib, "upper", print) end, "read-only")
        raises(function() rawset(lib, 1, 1) end, "read-only")
    end
    assert(rawget(string, "upper") == nil, "proxy stays empty")
    assert(string.upper("a") == "A")
    -- rawset still works on ordinary tables
    local t = {}
    assert(rawset(t, "k", 1) == t and t.k == 1)
end)

test("setmetatable on library tables fails", function()
    for _, lib in ipairs({string, table, math, os, coroutine, utf8, channel, time}) do
        raises(function() setmetatable(lib, {}) end, "protected")
        raises(function() setmetatable(lib, nil) end, "protected")
        assert(getmetatable(lib) == false)
    end
end)

test("the string metatable cannot be changed", function()
    local mt = getmetatable("")
    assert(mt.__index == string, "string methods resolve to the string library")
    raises(function() mt.__index = {upper = function() return "pwned" end} end, "read-only")
    raises(function() getmetatable("").__index = nil end, "read-only")
    raises(function() rawset(getmetatable(""), "__index", {}) end, "read-only")
    raises(function() getmetatable("").__index.upper = nil end, "read-only")
    raises(function() setmetatable(getmetatable(""), {}) end, "protected")
    assert(("x"):upper() == "X")
    assert(("%d"):format(3) == "3")
    assert("10" + 1 == 11, "string arithmetic coercion still works")
end)

test("pairs over a library does not expose the real table", function()
    local n, seen_upper = 0, false
    for k, v in pairs(string) do
        n = n + 1
        if k == "upper" then seen_upper = true end
    end
    assert(n > 10 and seen_upper)
    local f, s = pairs(string)
    assert(s == string, "the iteration state is the proxy itself")
    raises(function() s.upper = nil end, "read-only")
    for name, lib in pairs({string = string, table = table, math = math, os = os,
                            coroutine = coroutine, utf8 = utf8, channel = channel,
                            time = time, json = json, errors = errors}) do
        local _, st = pairs(lib)
        assert(st == lib, name .. ": pairs() hands out another table")
        local cnt = 0
        for _ in pairs(lib) do cnt = cnt + 1 end
        assert(cnt > 0, name .. ": pairs() lists nothing")
    end
    -- the iterator only reads
    local k, v = f(s, nil)
    assert(k ~= nil)
end)

test("getmetatable hides runtime userdata metatables", function()
    assert(getmetatable(channel.new()) == false)
    assert(getmetatable(time.now()) == false)
    assert(getmetatable(time.timer(time.HOUR)) == false)
    local e = errors.new("x")
    assert(getmetatable(e) == false)
end)

test("__gc metamethods are refused", function()
    raises(function() setmetatable({}, {__gc = function() end}) end, "__gc")
    raises(function() setmetatable({}, {__gc = true}) end, "__gc")
    -- adding __gc later has no effect in Lua 5.4 (not marked for finalization)
    local mt = {}
    local t = setmetatable({}, mt)
    mt.__gc = function() error("should never run") end
    t = nil
    collectgarbage("collect")
    -- ordinary metatables still work
    local v = setmetatable({}, {__index = function(_, k) return k .. "!" end})
    assert(v.hi == "hi!")
end)

test("collectgarbage: count, collect, step allowed; the rest refused", function()
    assert(type(collectgarbage("count")) == "number")
    assert(collectgarbage() == 0)
    assert(collectgarbage("collect") == 0)
    assert(type(collectgarbage("step")) == "boolean")
    assert(collectgarbage("isrunning") == true)
    for _, opt in ipairs({"stop", "restart", "incremental", "generational", "setpause",
                          "setstepmul", "bogus"}) do
        raises(function() collectgarbage(opt) end)
    end
    assert(collectgarbage("isrunning") == true)
end)

test("globals can be defined and replaced by the script", function()
    my_global = 1
    assert(_G.my_global == 1)
    my_global = nil
    local saved = print
    print = function() end
    print = saved
end)

test("standard functions that scripts need are present", function()
    for _, name in ipairs({"assert", "error", "ipairs", "next", "pairs", "pcall", "print",
                           "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable",
                           "getmetatable", "tonumber", "tostring", "type", "xpcall", "load",
                           "require", "collectgarbage"}) do
        assert(type(_G[name]) == "function", name)
    end
    assert(_VERSION == "Lua 5.4")
    assert(string.format("%5.2f", 1.5) == " 1.50")
    assert(table.concat({1, 2, 3}, ",") == "1,2,3")
    assert(utf8.char(228) == "ä")
    assert(math.random(1, 1) == 1)
end)

test("pcall and xpcall behave as in Lua", function()
    local ok, e = pcall(error, "m", 0)
    assert(not ok and e == "m")
    local r = {pcall(function(...) return ... end, 1, 2, 3)}
    assert(r[1] == true and r[4] == 3)
    ok, e = xpcall(function() error({code = 1}) end, function(m) return m.code + 1 end)
    assert(not ok and e == 2)
    r = {xpcall(function(a, b) return a + b end, print, 2, 3)}
    assert(r[1] == true and r[2] == 5)
    raises(function() xpcall(print) end)
end)

test("coroutine library behaves as in Lua", function()
    local co = coroutine.create(function(a)
        local b = coroutine.yield(a + 1)
        error("inside " .. b)
    end)
    local ok, v = coroutine.resume(co, 1)
    assert(ok and v == 2)
    ok, v = coroutine.resume(co, "x")
    assert(not ok and tostring(v):find("inside x", 1, true))
    assert(coroutine.status(co) == "dead")
    ok, v = coroutine.resume(co)
    assert(not ok and tostring(v):find("dead", 1, true))
    local w = coroutine.wrap(function() coroutine.yield(1); error("wrapped") end)
    assert(w() == 1)
    raises(function() w() end, "wrapped")
    local c2 = coroutine.create(function() coroutine.yield() end)
    coroutine.resume(c2)
    assert(coroutine.close(c2) == true and coroutine.status(c2) == "dead")
    assert(coroutine.isyieldable())
    local _, ismain = coroutine.running()
    assert(ismain == false, "scripts never run on the main thread")
end)

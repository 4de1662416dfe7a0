-- The `json` module as scripts see it (lua/json.c).
-- Run by the runtime's test runner: each test(name, fn) is one case.

local function fails(v, pattern)
    local s, err = json.encode(v)
    assert(s == nil, "expected encode to fail, got " .. tostring(s))
    assert(errors.is(err, errors.INVALID), "kind " .. tostring(err))
    assert(err:retryable() == false)
    if pattern then
        assert(string.find(err:message(), pattern, 1, true), err:message())
    end
end

local function bad(text, pattern)
    local v, err = json.decode(text)
    assert(v == nil and err ~= nil, "expected decode to fail: " .. text)
    assert(errors.is(err, errors.INVALID))
    if pattern then
        assert(string.find(err:message(), pattern, 1, true), err:message())
    end
    return err
end

test("encode scalars", function()
    assert(json.encode(nil) == "null")
    assert(json.encode(true) == "true")
    assert(json.encode(false) == "false")
    assert(json.encode(0) == "0")
    assert(json.encode(-42) == "-42")
    assert(json.encode(math.maxinteger) == "9223372036854775807")
    assert(json.encode(math.mininteger) == "-9223372036854775808")
    assert(json.encode(1.5) == "1.5")
    assert(json.encode(0.1) == "0.1")
    assert(json.encode(2.0) == "2.0")
    assert(json.encode(-0.0) == "-0.0")
    assert(json.encode(1e300) == "1e+300")
    assert(json.encode("hi") == '"hi"')
end)

test("encode string escapes", function()
    assert(json.encode('a"b\\c') == '"a\\"b\\\\c"')
    assert(json.encode("\n\r\t\b\f") == '"\\n\\r\\t\\b\\f"')
    assert(json.encode("\0\1\31") == '"\\u0000\\u0001\\u001f"')
    assert(json.encode("/\127") == '"/\127"')
    assert(json.encode("h\u{e9}llo \u{1F600}") == '"h\u{e9}llo \u{1F600}"')
end)

test("encode refuses invalid UTF-8", function()
    fails("\xff", "UTF-8")
    fails("\xc3", "UTF-8")             -- truncated
    fails("\xc0\xaf", "UTF-8")         -- overlong
    fails("\xed\xa0\x80", "UTF-8")     -- surrogate
    fails("\xf4\x90\x80\x80", "UTF-8") -- above U+10FFFF
    fails({["\xff"] = 1}, "UTF-8")     -- in a key too
end)

test("encode tables", function()
    assert(json.encode({}) == "[]")
    assert(json.encode({1, 2, 3}) == "[1,2,3]")
    assert(json.encode({"a", {true, false}}) == '["a",[true,false]]')
    assert(json.encode({b = 1, a = 2, c = {d = "x"}}) == '{"a":2,"b":1,"c":{"d":"x"}}')
    assert(json.encode({[1] = "x", [2] = "y"}) == '["x","y"]')
    assert(json.encode({["1"] = "x"}) == '{"1":"x"}')
    assert(json.encode({[2.0] = "b", [1.0] = "a"}) == '["a","b"]')
end)

test("encode refuses what JSON cannot hold", function()
    fails({1, 2, x = 3}, "mixes")
    fails({[1] = 1, [3] = 3}, "sparse")
    fails({[2] = 1}, "sparse")
    fails({[0] = 1}, "positive integer")
    fails({[-1] = 1}, "positive integer")
    fails({[1.5] = 1}, "positive integer")
    fails({[true] = 1}, "neither")
    fails(print, "function")
    fails({f = print}, "function")
    fails(errors.new("x"), "userdata")
    if coroutine and coroutine.create then
        fails(coroutine.create(print), "thread")
    end
    fails(0 / 0, "NaN")
    fails(math.huge, "infinity")
    fails({-math.huge}, "infinity")
end)

test("encode refuses cycles", function()
    local t = {}
    t[1] = t
    fails(t, "cycle")
    local a, b = {}, {}
    a.b, b.a = b, a
    fails(a, "cycle")
    -- the same table twice (no cycle) is fine
    local shared = {1}
    assert(json.encode({shared, shared}) == "[[1],[1]]")
end)

test("encode depth limit is 128", function()
    local function nest(n)
        local t = {}
        for _ = 2, n do t = {t} end
        return t
    end
    assert(json.encode(nest(128)) == string.rep("[", 128) .. string.rep("]", 128))
    fails(nest(129), "128")
end)

test("encode ignores metatables", function()
    local t = setmetatable({}, {__index = function() return 1 end, __len = function() return 5 end})
    assert(json.encode(t) == "[]")
end)

test("encode misuse raises", function()
    assert(not pcall(json.encode))
end)

test("decode scalars", function()
    assert(json.decode("true") == true)
    assert(json.decode("false") == false)
    local v, err = json.decode("null")
    assert(v == nil and err == nil)
    assert(json.decode('"x"') == "x")
    assert(json.decode(" \t\r\n 1 \n") == 1)
end)

test("decode numbers", function()
    local function num(s, want, mtype)
        local v = json.decode(s)
        assert(math.type(v) == mtype, s .. " -> " .. tostring(math.type(v)))
        assert(v == want, s .. " -> " .. tostring(v))
    end
    num("0", 0, "integer")
    num("-0", 0, "integer")
    num("123", 123, "integer")
    num("-123", -123, "integer")
    num("9223372036854775807", math.maxinteger, "integer")
    num("-9223372036854775808", math.mininteger, "integer")
    num("9223372036854775808", 9223372036854775808.0, "float")
    num("-9223372036854775809", -9223372036854775809.0, "float")
    num("1.0", 1.0, "float")
    num("1e2", 100.0, "float")
    num("1E+2", 100.0, "float")
    num("-2.5e-3", -0.0025, "float")
    num("1e-400", 0.0, "float")
    local z = json.decode("-0.0")
    assert(math.type(z) == "float" and z == 0 and 1 / z < 0)
    bad("1e400", "out of range")
    bad("-1e400", "out of range")
end)

test("decode refuses bad numbers", function()
    for _, s in ipairs{"01", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity",
                       "-Infinity", "1.5.2", "--1", "- 1"} do
        bad(s)
    end
end)

test("decode strings and escapes", function()
    assert(json.decode('"a\\"b\\\\c\\/d"') == 'a"b\\c/d')
    assert(json.decode('"\\b\\f\\n\\r\\t"') == "\b\f\n\r\t")
    assert(json.decode('"\\u0041\\u00e9\\u20AC"') == "A\u{e9}\u{20ac}")
    assert(json.decode('"\\u0000"') == "\0")
    assert(json.decode('"\\ud83d\\ude00"') == "\u{1F600}")
    assert(json.decode('"\\uDBFF\\uDFFF"') == "\u{10FFFF}")
    assert(json.decode('"h\u{e9}llo \u{1F600}"') == "h\u{e9}llo \u{1F600}")
    assert(json.decode('""') == "")
end)

test("decode refuses bad strings", function()
    bad('"\\ud83d"', "surrogate")
    bad('"\\ud83dx"', "surrogate")
    bad('"\\ud83d\\u0041"', "surrogate")
    bad('"\\ude00"', "surrogate")
    bad('"\\u12"', "escape")
    bad('"\\u12g4"', "escape")
    bad('"\\x"', "escape")
    bad('"\\\'"', "escape")
    bad('"a\nb"', "control")
    bad('"a\tb"', "control")
    bad('"\xff"', "UTF-8")
    bad('"\xc0\xaf"', "UTF-8")
    bad('"\xed\xa0\x80"', "UTF-8")
    bad('"abc', "unterminated")
    bad('"abc\\"', "unterminated")
    bad("'x'")
end)

test("decode arrays and objects", function()
    local t = json.decode('[1, "two", [3], {"four": 4}]')
    assert(t[1] == 1 and t[2] == "two" and t[3][1] == 3 and t[4].four == 4)
    assert(next(json.decode("[]")) == nil)
    assert(next(json.decode("{}")) == nil)
    local o = json.decode('{"a": {"b": {"c": [true]}}, "": 0}')
    assert(o.a.b.c[1] == true and o[""] == 0)
    -- duplicate keys: the last wins
    assert(json.decode('{"k": 1, "k": 2}').k == 2)
    -- null leaves a hole in arrays and drops object members
    local a = json.decode("[1, null, 3]")
    assert(a[1] == 1 and a[2] == nil and a[3] == 3)
    local n = 0
    for _ in pairs(a) do n = n + 1 end
    assert(n == 2)
    local m = json.decode('{"x": null, "y": 1}')
    assert(m.x == nil and m.y == 1)
end)

test("decode refuses bad structure", function()
    for _, s in ipairs{"", " ", "[", "]", "{", "[1,]", "[,1]", "[1 2]", "{\"a\"}",
                       "{\"a\":}", "{\"a\":1,}", "{a:1}", "{1:1}", "[1]]", "tru", "nul",
                       "truex", "1 2", "[1] x", "\xef\xbb\xbf1", "// c\n1", "[1,/*x*/2]"} do
        bad(s)
    end
end)

test("decode error gives the byte offset", function()
    local err = bad("[1, 2, x]", "at byte offset 7")
    assert(err:details().offset == 7)
    err = bad("[1] ,", "at byte offset 4")
    assert(err:details().offset == 4)
    err = bad("", "offset 0")
end)

test("decode depth limit is 128", function()
    local ok = string.rep("[", 128) .. string.rep("]", 128)
    local t = json.decode(ok)
    for _ = 1, 127 do t = t[1] end
    assert(type(t) == "table" and next(t) == nil)
    bad(string.rep("[", 129) .. string.rep("]", 129), "128")
    bad(string.rep('{"a":', 129) .. "1" .. string.rep("}", 129), "128")
    -- a very deep document fails cleanly, without exhausting the C stack
    bad(string.rep("[", 100000), "128")
end)

test("decode misuse raises", function()
    assert(not pcall(json.decode))
    assert(not pcall(json.decode, 12))
    assert(not pcall(json.decode, {}))
end)

test("round trips", function()
    local values = {
        {1, 2, 3},
        {a = 1, b = {true, false}, c = "x\0y", d = {e = {}}},
        {0.1, 1 / 3, -1e-300, 1e300, 2 ^ 53, 5e-324, 1.7976931348623157e308},
        {math.maxinteger, math.mininteger, 0, -1},
        {"\u{0}\u{1f}\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}"},
    }
    local function same(a, b)
        if type(a) ~= type(b) then return false end
        if type(a) ~= "table" then
            return a == b and math.type(a) == math.type(b)
        end
        for k, v in pairs(a) do if not same(v, b[k]) then return false end end
        for k in pairs(b) do if a[k] == nil then return false end end
        return true
    end
    for i, v in ipairs(values) do
        local s = assert(json.encode(v))
        local back = json.decode(s)
        assert(same(v, back), "value " .. i .. " via " .. s)
        assert(json.encode(back) == s)
    end
end)

test("module table is read-only", function()
    assert(not pcall(function() json.encode = nil end))
    assert(type(json.encode) == "function")
    assert(getmetatable(json) == false)
end)

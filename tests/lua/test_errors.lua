-- The `errors` module as scripts see it (lua/errors.c).
-- Run by the runtime's test runner: each test(name, fn) is one case.

local function raises(fn, pattern)
    local ok, msg = pcall(fn)
    assert(not ok, "expected an error")
    if pattern then
        assert(string.find(tostring(msg), pattern, 1, true), "unexpected error: " .. tostring(msg))
    end
end

test("kind constants match the contract", function()
    local want = {
        NOT_FOUND = "NotFound", ALREADY_EXISTS = "AlreadyExists", INVALID = "Invalid",
        PERMISSION_DENIED = "PermissionDenied", UNAVAILABLE = "Unavailable",
        INTERNAL = "Internal", CANCELED = "Canceled", CONFLICT = "Conflict",
        TIMEOUT = "Timeout", RATE_LIMITED = "RateLimited", UNKNOWN = "",
    }
    for k, v in pairs(want) do
        assert(errors[k] == v, k)
    end
    local n = 0
    for k, v in pairs(errors) do
        if type(v) == "string" then
            assert(want[k] == v, "unexpected constant " .. k)
            n = n + 1
        end
    end
    assert(n == 11, "pairs(errors) lists " .. n .. " constants")
end)

test("module table is read-only", function()
    raises(function() errors.NOT_FOUND = "x" end, "read-only")
    raises(function() errors.extra = 1 end, "read-only")
    assert(errors.NOT_FOUND == "NotFound")
    assert(errors.extra == nil)
    assert(getmetatable(errors) == false)
    raises(function() setmetatable(errors, nil) end)
end)

test("new from a string", function()
    local e = errors.new("boom")
    assert(e:message() == "boom")
    assert(e:kind() == errors.UNKNOWN and e:kind() == "")
    assert(e:retryable() == nil)
    assert(e:details() == nil)
    assert(tostring(e) == "boom")
    assert(type(e:stack()) == "string")
    assert(string.find(e:stack(), "traceback", 1, true))
end)

test("new from a table", function()
    local d = {url = "ws://x", stage = "tcp"}
    local e = errors.new{message = "dial failed", kind = errors.INTERNAL, retryable = true,
                         details = d}
    assert(e:message() == "dial failed")
    assert(e:kind() == "Internal")
    assert(e:retryable() == true)
    local got = e:details()
    assert(got.url == "ws://x" and got.stage == "tcp")
    -- details are copies: neither the source nor a returned table changes the error
    d.url = "changed"
    got.stage = "changed"
    assert(e:details().url == "ws://x")
    assert(e:details().stage == "tcp")
    assert(e:details() ~= e:details())
    local f = errors.new{message = "no", kind = errors.PERMISSION_DENIED, retryable = false}
    assert(f:retryable() == false)
    assert(f:details() == nil)
    assert(errors.new{message = "m"}:kind() == "")
end)

test("new misuse raises", function()
    raises(function() errors.new() end)
    raises(function() errors.new(true) end)
    raises(function() errors.new{kind = errors.INVALID} end, "message")
    raises(function() errors.new{message = "x", kind = "NoSuchKind"} end, "unknown kind")
    raises(function() errors.new{message = "x", kind = 3} end, "unknown kind")
    raises(function() errors.new{message = "x", retryable = "yes"} end, "retryable")
    raises(function() errors.new{message = "x", details = "d"} end, "details")
    raises(function() errors.new{message = "x", retriable = true} end, "unknown field")
    raises(function() errors.new{"positional"} end, "unknown field")
end)

test("every kind round-trips through new and is", function()
    for _, k in ipairs{"NOT_FOUND", "ALREADY_EXISTS", "INVALID", "PERMISSION_DENIED",
                       "UNAVAILABLE", "INTERNAL", "CANCELED", "CONFLICT", "TIMEOUT",
                       "RATE_LIMITED", "UNKNOWN"} do
        local e = errors.new{message = k, kind = errors[k]}
        assert(e:kind() == errors[k])
        assert(errors.is(e, errors[k]))
        if k ~= "TIMEOUT" then assert(not errors.is(e, errors.TIMEOUT)) end
    end
end)

test("is", function()
    local e = errors.new{message = "gone", kind = errors.NOT_FOUND}
    assert(errors.is(e, errors.NOT_FOUND) == true)
    assert(errors.is(e, errors.INVALID) == false)
    assert(errors.is(e, errors.UNKNOWN) == false)
    -- plain strings are errors of kind UNKNOWN
    assert(errors.is("some failure", errors.UNKNOWN) == true)
    assert(errors.is("some failure", errors.NOT_FOUND) == false)
    -- anything else is not an error
    assert(errors.is(nil, errors.UNKNOWN) == false)
    assert(errors.is(42, errors.UNKNOWN) == false)
    assert(errors.is({}, errors.UNKNOWN) == false)
    raises(function() errors.is(e, "Bogus") end, "unknown error kind")
    raises(function() errors.is(e) end)
end)

test("wrap keeps kind, retryable and details", function()
    local e = errors.new{message = "refused", kind = errors.UNAVAILABLE, retryable = true,
                         details = {port = 80}}
    local w = errors.wrap(e, "connecting")
    assert(w:message() == "connecting: refused")
    assert(tostring(w) == "connecting: refused")
    assert(w:kind() == errors.UNAVAILABLE)
    assert(w:retryable() == true)
    assert(w:details().port == 80)
    assert(w:stack() == e:stack())
    assert(w:unwrap() == e)
    assert(errors.is(w, errors.UNAVAILABLE))
    assert(not errors.is(w, errors.INTERNAL))
    local ww = errors.wrap(w, "outer")
    assert(ww:message() == "outer: connecting: refused")
    assert(errors.is(ww, errors.UNAVAILABLE))
    assert(ww:unwrap():unwrap() == e)
    -- the original is unchanged
    assert(e:message() == "refused")
end)

test("wrap of strings and nil", function()
    local w = errors.wrap("disk on fire", "saving")
    assert(w:message() == "saving: disk on fire")
    assert(w:kind() == errors.UNKNOWN)
    assert(w:retryable() == nil)
    assert(w:unwrap() == "disk on fire")
    assert(errors.is(w, errors.UNKNOWN))
    assert(errors.wrap(nil, "ctx") == nil)
    raises(function() errors.wrap(errors.new("x")) end)
    raises(function() errors.wrap({}, "ctx") end)
end)

test("error objects are sealed", function()
    local e = errors.new("x")
    assert(type(e) == "userdata")
    assert(getmetatable(e) == false)
    raises(function() setmetatable(e, {}) end)
    raises(function() e.kind = nil end)
    raises(function() return e.message(42) end)
    assert(e.nosuchmethod == nil)
end)

test("concatenation and raising", function()
    local e = errors.new{message = "bad", kind = errors.INVALID}
    assert("error: " .. e == "error: bad")
    assert(e .. "!" == "bad!")
    local ok, got = pcall(error, e)
    assert(not ok and got == e)
    assert(errors.is(got, errors.INVALID))
end)

test("stack is taken where the error was made", function()
    local function make_here()
        local e = errors.new("deep")
        return e
    end
    local e = make_here()
    assert(string.find(e:stack(), "make_here", 1, true), e:stack())
end)

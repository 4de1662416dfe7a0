-- Closing in both directions, close codes, invalid payloads.
-- servers: c py node

local function drain(ch)
    local got = {}
    while true do
        local m, ok = ch:receive()
        if not ok then return got end
        got[#got + 1] = m.data
    end
end

test("server close after queued messages delivers all of them first", function()
    for _, code in ipairs { 1000, 1001, 1008, 1011, 4001 } do
        local c = assert(websocket.connect("@BASE@/close?code=" .. code .. "&reason=bye%20now&n=50",
            { channel_capacity = 4 }))
        local got = drain(c:channel())
        assert(#got == 50, code .. ": got " .. #got .. " messages")
        for i = 1, 50 do assert(got[i] == "m" .. i, "order") end
        local info = c:info()
        assert(info.state == "closed" and info.close_code == code, tostring(info.close_code))
        assert(info.close_reason == "bye now", info.close_reason)
        assert(info.closed_by == "server")
        -- the connection is gone: send/ping fail, close still succeeds once
        local ok, err = c:send("x")
        assert(ok == false and err:kind() == errors.INTERNAL and err:retryable() == false)
        ok, err = c:ping()
        assert(ok == false and err:kind() == errors.INTERNAL)
        assert(c:close() == true)
        ok, err = c:close()
        assert(ok == false and err:kind() == errors.INTERNAL and err:retryable() == false)
    end
end)

test("server close without status is 1005", function()
    local c = assert(websocket.connect("@BASE@/close?code=1005&n=1"))
    local got = drain(c:channel())
    assert(#got == 1 and got[1] == "m1")
    assert(c:info().close_code == 1005, tostring(c:info().close_code))
end)

test("client close codes", function()
    for _, code in ipairs { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999 } do
        local c = assert(websocket.connect("@BASE@/echo"))
        local ok, err = c:close(code, "reason " .. code)
        assert(ok == true, err and err:message())
        local i = c:info()
        assert(i.state == "closed" and i.closed_by == "client", i.state)
        local v, more = c:channel():receive()
        assert(v == nil and more == false)
    end
end)

test("unsendable close codes and reasons raise", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535 } do
        assert(not pcall(c.close, c, code), "code " .. code .. " accepted")
    end
    assert(not pcall(c.close, c, 1000, string.rep("r", 124)))
    assert(not pcall(c.close, c, 1000, "\xff"))
    assert(not pcall(c.close, c, "normal"))
    -- still open after the refused attempts
    assert(c:send("still") and c:channel():receive().data == "still")
    assert(c:close(websocket.CLOSE_CODES.NORMAL, string.rep("r", 123)))
end)

test("second close and use after close", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    assert(c:close())
    local ok, err = c:close()
    assert(ok == false and err:kind() == errors.INTERNAL and err:retryable() == false)
    ok, err = c:send("x")
    assert(ok == false and err:kind() == errors.INTERNAL)
    assert(err:message():find("closed"), err:message())
    ok, err = c:ping()
    assert(ok == false and err:kind() == errors.INTERNAL)
end)

test("messages queued before a client close are still delivered", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    for i = 1, 10 do assert(c:send("q" .. i)) end
    time.sleep("200ms")
    assert(c:close())
    local got = drain(c:channel())
    assert(#got == 10, "got " .. #got)
    for i = 1, 10 do assert(got[i] == "q" .. i) end
end)

test("invalid UTF-8 from the server closes with 1007", function()
    local c = assert(websocket.connect("@BASE@/invalid_utf8"))
    local got = drain(c:channel())
    assert(#got == 1 and got[1] == "ok", "#got=" .. #got)
    local i = c:info()
    assert(i.close_code == 1007, tostring(i.close_code))
    assert(i.closed_by ~= "server")
end)

-- Failing servers: a handshake one byte per second, a peer that never reads,
-- and TCP ending (FIN, RST, kill -9 of the server process) in the middle of a
-- message. Nothing hangs past its bound, every complete message that arrived
-- before the failure is delivered, and the end is ABNORMAL_CLOSURE (1006).

local function drain(ch)
    local got = {}
    while true do
        local m, ok = ch:receive()
        if not ok then return got end
        got[#got + 1] = m.data
    end
end

local function ms_since(t0) return time.now():sub(t0) // 1000000 end

test("handshake one byte per second: dial_timeout 1500ms still fires", function()
    local t0 = time.now()
    local c, err = websocket.connect("@FAULT@/slow_handshake?delay=1000", { dial_timeout = "1500ms" })
    local ms = ms_since(t0)
    assert(c == nil and err, "connected")
    assert(err:kind() == errors.INTERNAL and err:retryable() == true, err:kind())
    assert(ms >= 1400 and ms < 4000, "after " .. ms .. " ms")
    assert(err:details().stage == "timeout", tostring(err:details().stage))
end)

test("handshake 1 byte per 20 ms completes within a generous dial_timeout", function()
    local c = assert(websocket.connect("@FAULT@/slow_handshake?delay=20", { dial_timeout = "20s" }))
    assert(c:send("after a slow handshake"))
    assert(c:channel():receive().data == "after a slow handshake")
    c:close()
end)

test("endless response headers fail the dial, not the broker", function()
    local t0 = time.now()
    local c, err = websocket.connect("@FAULT@/hs_flood", { dial_timeout = "10s" })
    assert(c == nil and err:kind() == errors.INTERNAL, "connected")
    assert(ms_since(t0) < 5000)
    assert(err:details().stage == "http", tostring(err:details().stage))
end)

test("server never reads: send fails at write_timeout, close returns within its bound", function()
    local c = assert(websocket.connect("@FAULT@/never_read?hold=20000", { write_timeout = "1s" }))
    local chunk = string.rep("n", 256 * 1024)
    local t0 = time.now()
    local ok, err
    for _ = 1, 400 do -- up to 100 MiB: far more than the socket buffers hold
        ok, err = c:send(chunk, websocket.BINARY)
        if not ok then break end
    end
    local ms = ms_since(t0)
    assert(ok == false, "every send succeeded")
    assert(err:kind() == errors.TIMEOUT, err:kind() .. ": " .. err:message())
    assert(ms < 6000, "send failed only after " .. ms .. " ms")
    t0 = time.now()
    c:close()
    assert(ms_since(t0) < 6000, "close took " .. ms_since(t0) .. " ms")
    local v, more = c:channel():receive()
    assert(v == nil and more == false)
end)

test("server never reads, no write_timeout: close still returns within its bound", function()
    local c = assert(websocket.connect("@FAULT@/never_read?hold=20000"))
    local sent = 0
    -- fill the socket buffers without waiting for ever: a task sends while we watch
    local done = channel.new(1)
    coroutine.spawn(function()
        local chunk = string.rep("q", 64 * 1024)
        while sent < 64 do
            if not c:send(chunk, websocket.BINARY) then break end
            sent = sent + 1
        end
        done:send(true)
    end)
    time.sleep("500ms")
    local t0 = time.now()
    local ok = c:close()
    local ms = ms_since(t0)
    assert(ms < 7000, "close took " .. ms .. " ms")
    assert(ok == true or ok == false)
    local r = channel.select { done:case_receive(), time.after("7s"):case_receive() }
    assert(r.channel == done, "the blocked send did not end after close")
end)

for _, case in ipairs {
    { path = "/fin_mid", what = "FIN" },
    { path = "/rst_mid", what = "RST" },
    { path = "/kill_mid", what = "kill -9 of the server" },
} do
    for _, n in ipairs { 0, 1, 50 } do
        test(case.what .. " mid-message after " .. n .. " messages -> 1006, all delivered", function()
            local t0 = time.now()
            local c = assert(websocket.connect("@FAULT@" .. case.path .. "?n=" .. n .. "&partial=100",
                { channel_capacity = 4 }))
            local got = drain(c:channel())
            assert(#got == n, "got " .. #got .. " of " .. n)
            for i = 1, n do assert(got[i] == "m" .. i, "order at " .. i) end
            local i = c:info()
            assert(i.state == "closed" and i.close_code == 1006, tostring(i.close_code))
            assert(ms_since(t0) < 5000, "took " .. ms_since(t0) .. " ms")
            local ok, err = c:send("x")
            assert(ok == false and err:kind() == errors.INTERNAL)
        end)
    end
end

test("FIN mid-message while the script is not reading: all delivered later", function()
    local c = assert(websocket.connect("@FAULT@/fin_mid?n=200&partial=10", { channel_capacity = 2 }))
    time.sleep("300ms") -- the broker pauses reading after 2; the FIN waits in the socket
    local got = drain(c:channel())
    assert(#got == 200, "got " .. #got)
    assert(got[200] == "m200")
    assert(c:info().close_code == 1006)
end)

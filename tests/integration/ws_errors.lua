-- Error rows and timeouts that need a server misbehaving on purpose (the raw
-- server and a socket that never answers): dial timeouts, handshake
-- failures, subprotocol mismatches, read/write timeouts, pings without pongs,
-- dropped TCP, invalid server close codes, and the close codes the server
-- sees from the client. One test (subprotocol with no overlap) runs against
-- every server because their answers differ.
-- servers: c py node raw

local function recv(ch, what)
    local msg, ok = ch:receive()
    assert(ok, (what or "receive") .. ": channel closed early")
    return msg
end

local function drain(ch)
    local got = {}
    while true do
        local m, ok = ch:receive()
        if not ok then return got end
        got[#got + 1] = m.data
    end
end

local function ms_since(t0)
    return time.now():sub(t0) / time.MILLISECOND
end

-- A dial failure: nil, err INTERNAL, retryable, the given stage, a message
-- containing `want`. Returns the error.
local function dial_fails(url, opts, stage, want)
    local c, err = websocket.connect(url, opts)
    assert(c == nil, url .. " connected")
    assert(err:kind() == errors.INTERNAL, "kind " .. tostring(err:kind()))
    assert(err:retryable() == true, "dial failure must be retryable")
    assert(err:details().stage == stage, "stage " .. tostring(err:details().stage) .. ": "
        .. err:message())
    assert(err:message():find(want, 1, true), "'" .. want .. "' not in: " .. err:message())
    return err
end

test("offered subprotocols with no overlap", function()
    local c, err = websocket.connect("@BASE@/subproto", { protocols = { "x-nobody-speaks-this" } })
    if "@SERVER@" == "c" then
        -- lws cannot go on without a subprotocol once some were offered
        assert(c == nil and err:kind() == errors.INTERNAL and err:retryable() == true)
        assert(err:details().status == 400, tostring(err:details().status))
    else
        -- RFC 6455 lets the server select none; the connection opens without
        assert(c, err and err:message())
        assert(c:info().protocol == nil)
        assert(recv(c:channel()).data == "")
        c:close()
    end
end)

if "@SERVER@" == "raw" then
    test("refused port: stage tcp, retryable", function()
        dial_fails("@REFUSED@/echo", nil, "tcp", "refused")
    end)

    test("dial timeout: server accepts TCP but never answers", function()
        local t0 = time.now()
        dial_fails("@SILENT@/echo", { dial_timeout = "300ms" }, "timeout", "WebSocket handshake")
        local ms = ms_since(t0)
        assert(ms >= 250 and ms < 5000, "took " .. ms .. " ms")
        t0 = time.now()
        dial_fails("@SILENT@/echo", { dial_timeout = 200 }, "timeout", "200 ms")
        assert(ms_since(t0) < 5000)
    end)

    test("dial timeout during a slow handshake", function()
        local t0 = time.now()
        dial_fails("@RAW@/slow_handshake?delay=100", { dial_timeout = "500ms" }, "timeout",
            "timed out after 500 ms")
        local ms = ms_since(t0)
        assert(ms >= 450 and ms < 5000, "took " .. ms .. " ms")
    end)

    test("a slow handshake inside the dial timeout succeeds (and 0 = none)", function()
        for _, opts in ipairs { { dial_timeout = "20s" }, { dial_timeout = 0 } } do
            local c, err = websocket.connect("@RAW@/slow_handshake?delay=2", opts)
            assert(c, err and err:message())
            assert(c:send("slow") and recv(c:channel()).data == "slow")
            c:close()
        end
    end)

    test("HTTP status and bad accept key fail at stage http", function()
        local err = dial_fails("@RAW@/echo?status=503", nil, "http", "503")
        assert(err:details().status == 503)
        err = dial_fails("@RAW@/echo?status=200", nil, "http", "200")
        assert(err:details().status == 200)
        dial_fails("@RAW@/echo?accept=bad", nil, "http", "Sec-WebSocket-Accept")
    end)

    test("server choosing a subprotocol that was not offered", function()
        dial_fails("@RAW@/subproto?proto=evil", { protocols = { "chat.v2", "graphql-ws" } }, "http",
            "did not offer")
        dial_fails("@RAW@/subproto?proto=chat.v2", nil, "http", "did not offer")
        local c = assert(websocket.connect("@RAW@/subproto?proto=graphql-ws",
            { protocols = { "chat.v2", "graphql-ws" } }))
        assert(c:info().protocol == "graphql-ws")
        c:close()
    end)

    test("headers the broker reserves are refused as INVALID", function()
        for _, name in ipairs { "Content-Length", "Transfer-Encoding", "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions", "sec-websocket-version", "HOST" } do
            local c, err = websocket.connect("@RAW@/headers", { headers = { [name] = "1" } })
            assert(c == nil, name .. " accepted")
            assert(err:kind() == errors.INVALID and err:retryable() == false, tostring(err))
            assert(err:message():find("headers", 1, true), err:message())
        end
        for _, v in ipairs { "v\rw", "v\tw", "v\x7f", "v\x01" } do
            local c, err = websocket.connect("@RAW@/headers", { headers = { ["X-A"] = v } })
            assert(c == nil and err:kind() == errors.INVALID, "control character accepted")
            assert(err:message():find("control character", 1, true), err:message())
        end
        -- unusual but harmless values pass unchanged
        local c = assert(websocket.connect("@RAW@/headers", { headers = {
            ["X-Sp"] = "a b", ["X-Utf8"] = "h\xc3\xa9", ["X-Empty"] = "" } }))
        local h = json.decode(recv(c:channel()).data)
        assert(h["x-sp"] == "a b" and h["x-empty"] == "", json.encode(h))
        c:close()
    end)

    test("read_timeout ends a silent connection", function()
        local t0 = time.now()
        local c = assert(websocket.connect("@RAW@/subproto", { read_timeout = "300ms" }))
        local got = drain(c:channel())
        local ms = ms_since(t0)
        assert(#got == 1 and got[1] == "", "#got " .. #got)
        assert(ms >= 250 and ms < 5000, "took " .. ms .. " ms")
        local i = c:info()
        assert(i.state == "closed" and i.closed_by == "broker", i.state .. " " .. tostring(i.closed_by))
        assert(i.close_message and i.close_message:find("read timeout", 1, true),
            tostring(i.close_message))
        local ok, err = c:send("late")
        assert(ok == false and err:kind() == errors.INTERNAL and err:retryable() == false)
        assert(err:message():find("read timeout", 1, true), err:message())
        assert(c:close() == true)
    end)

    test("read_timeout: traffic keeps the connection alive", function()
        local c = assert(websocket.connect("@RAW@/echo", { read_timeout = "600ms" }))
        local ch = c:channel()
        for i = 1, 15 do
            time.sleep("100ms")
            assert(c:send("tick" .. i))
            assert(recv(ch, "tick").data == "tick" .. i)
        end
        assert(c:info().state == "open")
        c:close()
    end)

    test("read_timeout does not count time paused by backpressure", function()
        local c = assert(websocket.connect("@RAW@/blast?n=20&size=10",
            { read_timeout = "500ms", channel_capacity = 1 }))
        time.sleep("1500ms") -- the broker stops reading: the timer must not run
        local ch, n = c:channel(), 0
        while true do
            local m = recv(ch, "blast after a pause")
            if m.data == "END" then break end
            n = n + 1
        end
        assert(n == 20, "got " .. n)
        c:close()
    end)

    test("ping without a pong fails within read_timeout", function()
        local c = assert(websocket.connect("@RAW@/never_read?hold=4000", { read_timeout = "400ms" }))
        local t0 = time.now()
        local ok, err = c:ping()
        local ms = ms_since(t0)
        assert(ok == false, "pong from a server that never reads")
        assert(err:kind() == errors.TIMEOUT or err:kind() == errors.INTERNAL, tostring(err))
        assert(ms < 3000, "took " .. ms .. " ms")
        c:close()
    end)

    test("write_timeout: a server that never reads", function()
        local c = assert(websocket.connect("@RAW@/never_read?hold=5000", { write_timeout = "300ms" }))
        local t0 = time.now()
        local ok, err = c:send(string.rep("w", 16 * 1024 * 1024), websocket.BINARY)
        local ms = ms_since(t0)
        assert(ok == false, "16 MiB went into a server that never reads")
        assert(err:kind() == errors.TIMEOUT, tostring(err:kind()) .. ": " .. err:message())
        assert(ms >= 250 and ms < 3000, "took " .. ms .. " ms")
        ok, err = c:send("more")
        assert(ok == false and err:kind() == errors.INTERNAL and err:retryable() == false)
        assert(c:close() == true)
        local v, more = c:channel():receive()
        assert(v == nil and more == false)
    end)

    test("a send cut off by the broker's read timeout reports TIMEOUT", function()
        local c = assert(websocket.connect("@RAW@/never_read?hold=5000", { read_timeout = "300ms" }))
        local ok, err = c:send(string.rep("w", 16 * 1024 * 1024), websocket.BINARY)
        assert(ok == false, "16 MiB went into a server that never reads")
        assert(err:kind() == errors.TIMEOUT, tostring(err:kind()) .. ": " .. err:message())
        assert(err:message():find("read timeout", 1, true), err:message())
        local i = c:info()
        assert(i.state == "closed" and i.closed_by == "broker" and i.close_code == 1006)
    end)

    test("client close codes and reasons reach the server", function()
        local cases = { { 1000, "" }, { 1001, "going" }, { 1003, "data" }, { 1008, "policy" },
            { 1011, "oops" }, { 1013, "later" }, { 3000, "app" }, { 4999, string.rep("r", 123) } }
        for i, case in ipairs(cases) do
            local id = "cc" .. i
            local c = assert(websocket.connect("@RAW@/close_seen?id=" .. id))
            assert(c:send("x") and recv(c:channel()).data == "x")
            assert(c:close(case[1], case[2]))
            local r = assert(websocket.connect("@RAW@/close_report?id=" .. id))
            local line = recv(r:channel()).data
            assert(line == "code=" .. case[1] .. " reason=" .. case[2], line)
            r:close()
        end
        -- default close() is 1000 without reason; <close> and collection send 1001
        local c = assert(websocket.connect("@RAW@/close_seen?id=default"))
        c:close()
        do
            local t <close> = assert(websocket.connect("@RAW@/close_seen?id=tbc"))
            assert(t:send("y") and recv(t:channel()).data == "y")
        end
        do
            local g = assert(websocket.connect("@RAW@/close_seen?id=gc"))
            assert(g:send("z") and recv(g:channel()).data == "z")
            g = nil
            collectgarbage()
            collectgarbage()
        end
        for id, want in pairs { default = "code=1000 reason=", tbc = "code=1001 reason=",
            gc = "code=1001 reason=" } do
            local r = assert(websocket.connect("@RAW@/close_report?id=" .. id))
            local line = recv(r:channel()).data
            assert(line == want, id .. ": " .. line)
            r:close()
        end
    end)

    test("server close codes: unusual valid ones, long reason, and invalid ones", function()
        local reason = string.rep("q", 123)
        local c = assert(websocket.connect("@RAW@/close?code=4999&n=2&reason=" .. reason))
        local got = drain(c:channel())
        assert(#got == 2)
        local i = c:info()
        assert(i.close_code == 4999 and i.close_reason == reason and i.closed_by == "server")
        for _, code in ipairs { 999, 1004, 1006, 1015, 2999, 5000 } do
            c = assert(websocket.connect("@RAW@/close?n=3&code=" .. code))
            got = drain(c:channel())
            assert(#got == 3, code .. ": messages before the bad close were lost")
            i = c:info()
            assert(i.state == "closed" and i.close_code == 1002 and i.closed_by == "broker",
                code .. " -> " .. tostring(i.close_code) .. " by " .. tostring(i.closed_by))
        end
    end)

    test("TCP dropped without a close frame: messages first, then 1006", function()
        for _, rst in ipairs { 0, 1 } do
            local c = assert(websocket.connect("@RAW@/drop?n=100&rst=" .. rst, { channel_capacity = 3 }))
            time.sleep("100ms")
            local got = drain(c:channel())
            if rst == 0 then
                assert(#got == 100, "FIN: got " .. #got)
                for k = 1, 100 do assert(got[k] == "m" .. k) end
            else
                -- a reset may discard bytes the kernel had not handed over yet
                for k = 1, #got do assert(got[k] == "m" .. k) end
            end
            local i = c:info()
            assert(i.close_code == 1006 and i.closed_by == "broker", tostring(i.close_code))
            local ok, err = c:send("x")
            assert(ok == false and err:kind() == errors.INTERNAL)
        end
    end)
end

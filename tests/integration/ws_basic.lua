-- websocket basics: echo, channel, select, ping, info, send errors.
-- servers: c py node

local function recv(ch, what)
    local msg, ok = ch:receive()
    assert(ok, (what or "receive") .. ": channel closed early")
    return msg
end

test("constants match the seed", function()
    assert(websocket.TEXT == 1 and websocket.BINARY == 2)
    assert(websocket.TYPE_TEXT == "text" and websocket.TYPE_BINARY == "binary")
    assert(websocket.TYPE_PING == "ping" and websocket.TYPE_PONG == "pong")
    assert(websocket.TYPE_CLOSE == "close")
    assert(websocket.COMPRESSION.DISABLED == 0)
    assert(websocket.COMPRESSION.CONTEXT_TAKEOVER == 1)
    assert(websocket.COMPRESSION.NO_CONTEXT == 2)
    local cc = websocket.CLOSE_CODES
    assert(cc.NORMAL == 1000 and cc.GOING_AWAY == 1001 and cc.PROTOCOL_ERROR == 1002)
    assert(cc.UNSUPPORTED_DATA == 1003 and cc.RESERVED == 1004 and cc.NO_STATUS == 1005)
    assert(cc.ABNORMAL_CLOSURE == 1006 and cc.INVALID_PAYLOAD == 1007)
    assert(cc.POLICY_VIOLATION == 1008 and cc.MESSAGE_TOO_BIG == 1009)
    assert(cc.MANDATORY_EXTENSION == 1010 and cc.INTERNAL_ERROR == 1011)
    assert(cc.SERVICE_RESTART == 1012 and cc.TRY_AGAIN_LATER == 1013)
    assert(cc.BAD_GATEWAY == 1014 and cc.TLS_HANDSHAKE == 1015)
    assert(require("websocket") == websocket)
end)

test("module tables are read-only", function()
    assert(not pcall(function() websocket.TEXT = 5 end))
    assert(not pcall(function() websocket.CLOSE_CODES.NORMAL = 1 end))
    assert(not pcall(function() websocket.COMPRESSION.X = 1 end))
    assert(websocket.TEXT == 1)
end)

test("echo text and binary", function()
    local c, err = websocket.connect("@BASE@/echo")
    assert(c, err and err:message())
    local ch = c:channel()
    assert(c:send("Hello, Server!") == true)
    local m = recv(ch)
    assert(m.type == "text" and m.data == "Hello, Server!", m.data)
    local bin = "\0\1\2\255binary\0"
    assert(c:send(bin, websocket.BINARY))
    m = recv(ch)
    assert(m.type == websocket.TYPE_BINARY and m.data == bin)
    assert(c:send("") == true)
    m = recv(ch)
    assert(m.type == "text" and m.data == "")
    local big = string.rep("0123456789", 200000) -- 2 MB text, many chunks
    assert(c:send(big))
    m = recv(ch)
    assert(m.data == big, "2 MB echo differs")
    assert(c:close() == true)
end)

test("channel() and receive() return the same channel", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local a, b, r = c:channel(), c:channel(), c:receive()
    assert(a == b and b == r)
    c:close()
end)

test("messages arrive before the first channel() call are kept", function()
    local c = assert(websocket.connect("@BASE@/close?code=1000&reason=bye&n=3"))
    time.sleep("200ms")
    local ch = c:channel()
    assert(recv(ch).data == "m1")
    assert(recv(ch).data == "m2")
    assert(recv(ch).data == "m3")
    local v, ok = ch:receive()
    assert(v == nil and ok == false)
end)

test("send argument errors raise", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    assert(not pcall(c.send, c, "x", 3))
    assert(not pcall(c.send, c, "x", "text"))
    assert(not pcall(c.send, c, 42))
    assert(not pcall(c.send, c, nil))
    assert(not pcall(c.send, c, {}))
    c:close()
end)

test("invalid UTF-8 text is refused, nothing sent", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local ok, err = c:send("\xff\xfe")
    assert(ok == false and err:kind() == errors.INVALID, tostring(err))
    ok, err = c:send("\xed\xa0\x80") -- surrogate
    assert(ok == false and err:kind() == errors.INVALID)
    assert(c:send("\xff\xfe", websocket.BINARY)) -- fine as binary
    assert(c:send("after"))
    local ch = c:channel()
    local m = recv(ch)
    assert(m.type == "binary" and m.data == "\xff\xfe")
    assert(recv(ch).data == "after")
    c:close()
end)

test("select with time.after", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local ch = c:channel()
    local timeout = time.after("100ms")
    local r = channel.select { ch:case_receive(), timeout:case_receive() }
    assert(r.channel == timeout, "nothing was sent, the timer must win")
    c:send("hi")
    timeout = time.after("5s")
    r = channel.select { ch:case_receive(), timeout:case_receive() }
    assert(r.channel == ch and r.ok and r.value.data == "hi")
    c:close()
end)

test("ping waits for the pong", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local ok, err = c:ping()
    assert(ok == true, err and err:message())
    assert(c:ping() and c:ping())
    c:close()
end)

test("server ping is answered by the broker", function()
    local c = assert(websocket.connect("@BASE@/ping"))
    local m = recv(c:channel())
    assert(m.data == "pong:srv", m.data)
    c:close()
end)

test("info reports state and negotiation", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local i = c:info()
    assert(i.state == "open" and i.url == "@BASE@/echo")
    assert(i.protocol == nil)
    assert(c:close())
    i = c:info()
    assert(i.state == "closed" and i.close_code == 1000 and i.closed_by == "client")
end)

test("concurrent tasks send on one connection", function()
    local c = assert(websocket.connect("@BASE@/echo"))
    local done = channel.new(4)
    for t = 1, 4 do
        coroutine.spawn(function()
            for i = 1, 50 do assert(c:send(string.format("t%d-%d-", t, i) .. string.rep("y", 5000))) end
            done:send(true)
        end)
    end
    for _ = 1, 4 do done:receive() end
    local ch, seen = c:channel(), {}
    for _ = 1, 200 do
        local m = recv(ch)
        local t, i = m.data:match("^t(%d)%-(%d+)%-")
        t, i = tonumber(t), tonumber(i)
        assert(t and #m.data == #string.format("t%d-%d-", t, i) + 5000, "message mixed up")
        assert((seen[t] or 0) + 1 == i, "per-task order broken")
        seen[t] = i
    end
    c:close()
end)

test("to-be-closed client closes on scope exit", function()
    local ch
    do
        local c <close> = assert(websocket.connect("@BASE@/echo"))
        ch = c:channel()
        c:send("x")
        assert(recv(ch).data == "x")
    end
    -- the close handshake finishes in the broker; the channel then ends
    local v, ok = ch:receive()
    assert(v == nil and ok == false)
end)

-- websocket.connect options and connect errors.
-- servers: c py node

local function recv(ch)
    local msg, ok = ch:receive()
    assert(ok, "channel closed early")
    return msg
end

local function invalid(opts, name)
    local c, err = websocket.connect("@BASE@/echo", opts)
    assert(c == nil, "option " .. name .. " was accepted")
    assert(err:kind() == errors.INVALID, name .. ": kind " .. tostring(err:kind()))
    assert(err:retryable() == false, name .. ": must not be retryable")
    assert(err:message():find(name, 1, true), name .. " not named in: " .. err:message())
end

test("headers reach the server", function()
    local c = assert(websocket.connect("@BASE@/headers", {
        headers = { ["Authorization"] = "Bearer t0k3n", ["X-Custom"] = "a b;c=d" },
    }))
    local h = json.decode(recv(c:channel()).data)
    assert(h["authorization"] == "Bearer t0k3n", tostring(h["authorization"]))
    assert(h["x-custom"] == "a b;c=d")
    c:close()
end)

test("reserved and malformed headers are refused", function()
    invalid({ headers = { Host = "evil" } }, "headers")
    invalid({ headers = { ["sec-websocket-key"] = "x" } }, "headers")
    invalid({ headers = { UPGRADE = "x" } }, "headers")
    invalid({ headers = { connection = "close" } }, "headers")
    invalid({ headers = { ["X-A"] = "a\r\nInjected: 1" } }, "headers")
    invalid({ headers = { ["X-A"] = "a\nb" } }, "headers")
    invalid({ headers = { ["X-A"] = "a\0b" } }, "headers")
    invalid({ headers = { ["Bad Name"] = "v" } }, "headers")
    invalid({ headers = { [""] = "v" } }, "headers")
    invalid({ headers = { ["X-A"] = 5 } }, "headers")
    invalid({ headers = { "positional" } }, "headers")
    invalid({ headers = "X-A: b" }, "headers")
end)

test("subprotocol negotiation", function()
    local c = assert(websocket.connect("@BASE@/subproto", { protocols = { "x-unknown", "graphql-ws", "chat.v2" } }))
    assert(recv(c:channel()).data == "graphql-ws")
    assert(c:info().protocol == "graphql-ws")
    c:close()
    c = assert(websocket.connect("@BASE@/subproto", { protocols = { "chat.v2" } }))
    assert(recv(c:channel()).data == "chat.v2")
    c:close()
    c = assert(websocket.connect("@BASE@/subproto"))
    assert(recv(c:channel()).data == "")
    assert(c:info().protocol == nil)
    c:close()
    invalid({ protocols = { "chat", "chat" } }, "protocols")
    invalid({ protocols = { "bad proto" } }, "protocols")
    invalid({ protocols = { 1 } }, "protocols")
    invalid({ protocols = "chat" }, "protocols")
    invalid({ protocols = { [2] = "chat" } }, "protocols")
end)

test("compression on and off", function()
    local payload = string.rep("compress me please ", 2000)
    for _, mode in ipairs { websocket.COMPRESSION.DISABLED, websocket.COMPRESSION.CONTEXT_TAKEOVER,
        websocket.COMPRESSION.NO_CONTEXT } do
        local c, err = websocket.connect("@BASE@/echo", { compression = mode, compression_threshold = 16 })
        assert(c, err and err:message())
        local ext = c:info().extensions or ""
        if mode == websocket.COMPRESSION.DISABLED then
            assert(not ext:find("permessage%-deflate"), ext)
        elseif "@SERVER@" == "c" then
            -- the C demo server offers deflate only with --deflate
            assert(ext == "" or ext:find("permessage%-deflate"), ext)
        else
            assert(ext:find("permessage%-deflate"), "mode " .. mode .. ": no deflate in '" .. ext .. "'")
        end
        local ch = c:channel()
        for i = 1, 3 do
            assert(c:send(payload .. i))
            assert(recv(ch).data == payload .. i)
        end
        assert(c:send("tiny"))
        assert(recv(ch).data == "tiny")
        c:close()
    end
    invalid({ compression = 3 }, "compression")
    invalid({ compression = "on" }, "compression")
    invalid({ compression_threshold = -1 }, "compression_threshold")
    invalid({ compression_threshold = 100 * 1024 * 1024 + 1 }, "compression_threshold")
    invalid({ compression_threshold = 1.5 }, "compression_threshold")
end)

test("read_limit closes with 1009", function()
    local c = assert(websocket.connect("@BASE@/big?size=2000", { read_limit = 1000 }))
    local ch = c:channel()
    local v, ok = ch:receive()
    assert(v == nil and ok == false, "oversized message was delivered")
    local i = c:info()
    assert(i.state == "closed" and i.close_code == 1009, tostring(i.close_code))
    -- a message of exactly the limit is accepted
    c = assert(websocket.connect("@BASE@/big?size=1000", { read_limit = 1000 }))
    local m = recv(c:channel())
    assert(#m.data == 1000 and m.type == "binary")
    c:close()
    invalid({ read_limit = -1 }, "read_limit")
    invalid({ read_limit = 128 * 1024 * 1024 + 1 }, "read_limit")
    invalid({ read_limit = "1MB" }, "read_limit")
end)

test("channel_capacity range", function()
    invalid({ channel_capacity = 0 }, "channel_capacity")
    invalid({ channel_capacity = 10001 }, "channel_capacity")
    invalid({ channel_capacity = 2.5 }, "channel_capacity")
    local c = assert(websocket.connect("@BASE@/echo", { channel_capacity = 10000 }))
    c:close()
end)

test("timeouts accept numbers and strings", function()
    local c = assert(websocket.connect("@BASE@/echo", { dial_timeout = "5s", read_timeout = 10000,
        write_timeout = "1m30s" }))
    assert(c:send("t") and recv(c:channel()).data == "t")
    c:close()
    invalid({ dial_timeout = "soon" }, "dial_timeout")
    invalid({ read_timeout = -5 }, "read_timeout")
    invalid({ write_timeout = {} }, "write_timeout")
    invalid({ dial_timeout = "-1s" }, "dial_timeout")
end)

test("unknown option is INVALID", function()
    invalid({ dialtimeout = 5 }, "dialtimeout")
    invalid({ Headers = {} }, "Headers")
end)

test("argument errors raise", function()
    assert(not pcall(websocket.connect))
    assert(not pcall(websocket.connect, 42))
    assert(not pcall(websocket.connect, "@BASE@/echo", "opts"))
    assert(not pcall(websocket.connect, "@BASE@/echo", 5))
end)

test("dial failure is INTERNAL and retryable", function()
    local c, err = websocket.connect("@REFUSED@/echo", { dial_timeout = "3s" })
    assert(c == nil)
    assert(err:kind() == errors.INTERNAL, err:kind())
    assert(err:retryable() == true)
    local d = err:details()
    assert(d and d.url == "@REFUSED@/echo", d and d.url)
    assert(d.stage ~= nil and d.stage ~= "")
end)

test("HTTP refusal reports the status", function()
    local c, err = websocket.connect("@BASE@/nope?secret=1")
    assert(c == nil and err:kind() == errors.INTERNAL and err:retryable() == true)
    local d = err:details()
    assert(d.status == 404, tostring(d.status))
    assert(not d.url:find("secret"), "query leaked into details")
end)

test("bad scheme is refused", function()
    local c, err = websocket.connect("http://127.0.0.1:1/")
    assert(c == nil and err)
end)

test("policy denial", function()
    local c, err = websocket.connect("@DENIED@")
    assert(c == nil and err:kind() == errors.PERMISSION_DENIED, tostring(err))
    assert(err:retryable() == false)
end)

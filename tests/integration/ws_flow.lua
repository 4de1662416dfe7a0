-- Flow control: small channels, many messages, large messages, counting.
-- servers: c py node

test("channel_capacity=1 with 100000 messages, all in order", function()
    local c = assert(websocket.connect("@BASE@/blast?n=100000&size=16&type=text", { channel_capacity = 1 }))
    local ch = c:channel()
    local n = 0
    while true do
        local m, ok = ch:receive()
        assert(ok, "closed after " .. n)
        if m.data == "END" then break end
        assert(#m.data == 16 and m.type == "text")
        n = n + 1
    end
    assert(n == 100000, "got " .. n)
    c:close()
end)

test("blast binary with a slow reader", function()
    local c = assert(websocket.connect("@BASE@/blast?n=200&size=70000&type=binary", { channel_capacity = 2 }))
    local ch = c:channel()
    local n = 0
    while true do
        local m = assert(ch:receive())
        if m.data == "END" then break end
        assert(m.type == "binary" and #m.data == 70000)
        n = n + 1
        if n % 50 == 0 then time.sleep("20ms") end
    end
    assert(n == 200)
    c:close()
end)

test("big binary message arrives whole", function()
    local size = 5 * 1024 * 1024 + 3
    local c = assert(websocket.connect("@BASE@/big?size=" .. size, { read_limit = 8 * 1024 * 1024 }))
    local m = assert(c:channel():receive())
    assert(m.type == "binary" and #m.data == size)
    for _, i in ipairs { 0, 1, 250, 251, 252, 1000000, size - 1 } do
        assert(m.data:byte(i + 1) == i % 251, "byte " .. i)
    end
    c:close()
end)

test("server counts what we sent", function()
    local c = assert(websocket.connect("@BASE@/count"))
    local bytes = 0
    for i = 1, 1000 do
        local s = string.rep("z", i % 97)
        assert(c:send(s))
        bytes = bytes + #s
    end
    local big = string.rep("B", 3 * 1024 * 1024)
    assert(c:send(big, websocket.BINARY))
    bytes = bytes + #big
    assert(c:send("REPORT"))
    local m = assert(c:channel():receive())
    assert(m.data == string.format("count=%d bytes=%d", 1001, bytes), m.data)
    c:close()
end)

test("write_timeout accepts a generous bound", function()
    local c = assert(websocket.connect("@BASE@/count", { write_timeout = "10s" }))
    assert(c:send(string.rep("w", 1024 * 1024)))
    assert(c:send("REPORT"))
    assert(c:channel():receive().data == "count=1 bytes=1048576")
    c:close()
end)

test("prices stream with keep-alive select", function()
    local c = assert(websocket.connect("@BASE@/prices?interval=20&count=20"))
    c:send(json.encode({ action = "subscribe", symbols = { "BTC-USD", "ETH-USD" } }))
    local ch = c:channel()
    local heartbeat = time.after("50ms")
    local prices, pings = 0, 0
    while true do
        local r = channel.select { ch:case_receive(), heartbeat:case_receive() }
        if r.channel == heartbeat then
            -- the server may have closed already; then ping fails and the
            -- channel reports the end on the next round
            local ok, err = c:ping()
            if ok then
                pings = pings + 1
            else
                assert(err:kind() == errors.INTERNAL, tostring(err))
            end
            heartbeat = time.after("50ms")
        elseif not r.ok then
            break
        else
            local p = json.decode(r.value.data)
            assert(p.symbol == "BTC-USD" or p.symbol == "ETH-USD")
            prices = prices + 1
        end
    end
    assert(prices == 20, "prices " .. prices)
    assert(pings >= 1)
end)

test("chat echo through a room", function()
    local a = assert(websocket.connect("@BASE@/chat"))
    local b = assert(websocket.connect("@BASE@/chat"))
    a:send(json.encode({ type = "join", room = "r1" }))
    b:send(json.encode({ type = "join", room = "r1" }))
    assert(json.decode(a:channel():receive().data).type == "joined")
    assert(json.decode(b:channel():receive().data).type == "joined")
    a:send(json.encode({ type = "message", room = "r1", text = "hello" }))
    local m = json.decode(b:channel():receive().data)
    assert(m.type == "message" and m.text == "hello")
    a:close()
    b:close()
end)

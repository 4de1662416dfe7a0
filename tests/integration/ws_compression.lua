-- permessage-deflate: what goes out on the wire (the raw server's /rsv reports
-- RSV1, the first frame's wire length and the inflated length of every
-- message it receives) for each mode and threshold, negotiation failures,
-- and compressed messages from python3-websockets, Node ws and the raw server
-- decompressed correctly. The C demo server is left out: its deflate (lws
-- 4.1.6) is off unless started with --deflate (see tests/peers/README.md).
-- servers: py node raw

local CT = websocket.COMPRESSION.CONTEXT_TAKEOVER
local NC = websocket.COMPRESSION.NO_CONTEXT

local function recv(ch, what)
    local msg, ok = ch:receive()
    assert(ok, (what or "receive") .. ": channel closed early")
    return msg
end

-- Deterministic bytes that deflate cannot shrink (a 32-bit LCG).
local function noise(n, seed)
    local t, x = {}, seed or 12345
    for i = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        t[i] = string.char((x >> 16) & 0xFF)
    end
    return table.concat(t)
end

-- Sends data to /rsv and returns the report as a table of numbers.
local function rsv(c, data, kind)
    assert(c:send(data, kind))
    local line = recv(c:channel(), "rsv report").data
    local r = {}
    for k, v in line:gmatch("([%w_]+)=(%d+)") do r[k] = tonumber(v) end
    assert(r.rsv1 and r.len and r.data_len, line)
    return r
end

if "@SERVER@" == "raw" then
    test("compression off by default and with DISABLED: RSV1 never set", function()
        for _, opts in ipairs { {}, { compression = websocket.COMPRESSION.DISABLED } } do
            local c = assert(websocket.connect("@RAW@/rsv", opts))
            assert(c:info().extensions == nil, tostring(c:info().extensions))
            local data = string.rep("a", 10000)
            local r = rsv(c, data)
            assert(r.rsv1 == 0 and r.len == 10000 and r.data_len == 10000)
            r = rsv(c, data, websocket.BINARY)
            assert(r.rsv1 == 0 and r.opcode == 2)
            c:close()
        end
    end)

    test("CONTEXT_TAKEOVER: default threshold 128 bytes", function()
        local c = assert(websocket.connect("@RAW@/rsv", { compression = CT }))
        local ext = c:info().extensions
        assert(ext and ext:find("permessage-deflate", 1, true), tostring(ext))
        assert(not ext:find("no_context_takeover", 1, true), ext)
        local r = rsv(c, string.rep("b", 127))
        assert(r.rsv1 == 0 and r.len == 127 and r.data_len == 127, "127 bytes compressed")
        r = rsv(c, string.rep("b", 128))
        assert(r.rsv1 == 1 and r.data_len == 128 and r.len < 128, "128 bytes not compressed")
        r = rsv(c, string.rep("compressible ", 10000))
        assert(r.rsv1 == 1 and r.data_len == 130000 and r.len < 2000, "len " .. r.len)
        r = rsv(c, string.rep("\0\1", 5000), websocket.BINARY)
        assert(r.rsv1 == 1 and r.opcode == 2 and r.data_len == 10000)
        c:close()
    end)

    test("CONTEXT_TAKEOVER keeps the window, NO_CONTEXT does not", function()
        local data = noise(4000, 7)
        local c = assert(websocket.connect("@RAW@/rsv", { compression = CT }))
        local first = rsv(c, data, websocket.BINARY)
        local second = rsv(c, data, websocket.BINARY)
        assert(first.rsv1 == 1 and second.rsv1 == 1)
        assert(first.len > 3900, "noise compressed to " .. first.len)
        assert(second.len < 100, "repeat not found in the window: " .. second.len)
        c:close()
        c = assert(websocket.connect("@RAW@/rsv", { compression = NC }))
        first = rsv(c, data, websocket.BINARY)
        second = rsv(c, data, websocket.BINARY)
        assert(first.rsv1 == 1 and second.rsv1 == 1)
        assert(second.len > 3900 and second.len == first.len,
            "no-context repeat: " .. first.len .. " then " .. second.len)
        c:close()
    end)

    test("NO_CONTEXT: default threshold 512 bytes, no-takeover negotiated", function()
        local c = assert(websocket.connect("@RAW@/rsv", { compression = NC }))
        local ext = c:info().extensions
        assert(ext and ext:find("server_no_context_takeover", 1, true), tostring(ext))
        assert(ext:find("client_no_context_takeover", 1, true), ext)
        local r = rsv(c, string.rep("c", 511))
        assert(r.rsv1 == 0 and r.len == 511)
        r = rsv(c, string.rep("c", 512))
        assert(r.rsv1 == 1 and r.data_len == 512 and r.len < 512)
        for i = 1, 20 do
            r = rsv(c, string.rep("message " .. i .. " ", 100))
            assert(r.rsv1 == 1 and r.data_len == #("message " .. i .. " ") * 100)
        end
        c:close()
    end)

    test("explicit compression_threshold is honoured", function()
        for _, mode in ipairs { CT, NC } do
            local c = assert(websocket.connect("@RAW@/rsv", { compression = mode,
                compression_threshold = 1000 }))
            local r = rsv(c, string.rep("d", 999))
            assert(r.rsv1 == 0 and r.len == 999, "mode " .. mode .. ": 999 compressed")
            r = rsv(c, string.rep("d", 1000))
            assert(r.rsv1 == 1 and r.data_len == 1000, "mode " .. mode .. ": 1000 not compressed")
            c:close()
            c = assert(websocket.connect("@RAW@/rsv", { compression = mode,
                compression_threshold = 1 }))
            r = rsv(c, "e")
            assert(r.rsv1 == 1 and r.data_len == 1, "mode " .. mode .. ": 1 byte not compressed")
            r = rsv(c, "")
            assert(r.rsv1 == 0 and r.data_len == 0, "empty message compressed")
            c:close()
        end
    end)

    test("server declining deflate: plain frames", function()
        local c = assert(websocket.connect("@RAW@/rsv?deflate=0", { compression = CT }))
        assert(c:info().extensions == nil)
        local r = rsv(c, string.rep("f", 5000))
        assert(r.rsv1 == 0 and r.len == 5000)
        c:close()
    end)

    test("bad extension answers fail the dial", function()
        local function dial_fails(url, mode, want)
            local c, err = websocket.connect(url, { compression = mode })
            assert(c == nil, url .. " connected")
            assert(err:kind() == errors.INTERNAL and err:retryable() == true)
            assert(err:details().stage == "http", tostring(err:details().stage))
            assert(err:message():find(want, 1, true), err:message())
        end
        dial_fails("@RAW@/echo?ext=x-unknown-ext", CT, "extension")
        dial_fails("@RAW@/echo?ext=x-unknown-ext", websocket.COMPRESSION.DISABLED, "extension")
        dial_fails("@RAW@/echo?ext=permessage-deflate%3B%20client_max_window_bits%3D10", NC,
            "client_max_window_bits")
        dial_fails("@RAW@/echo?ext=permessage-deflate%3B%20foo%3D1", CT, "parameter")
    end)

    test("server that negotiates deflate but sends plain messages", function()
        local c = assert(websocket.connect("@RAW@/echo?compress=0", { compression = CT }))
        local ch = c:channel()
        local data = string.rep("plain ", 1000)
        assert(c:send(data))
        assert(recv(ch).data == data)
        c:close()
    end)

    test("compressed and fragmented server messages are reassembled", function()
        local c = assert(websocket.connect("@RAW@/echo?frag=100", { compression = CT }))
        local ch = c:channel()
        local data = noise(3000, 3) .. string.rep("z", 3000)
        assert(c:send(data, websocket.BINARY))
        local m = recv(ch)
        assert(m.type == "binary" and m.data == data)
        c:close()
    end)

    test("read_limit counts inflated bytes", function()
        -- /big's pattern deflates to a few hundred bytes on the wire
        local c = assert(websocket.connect("@RAW@/big?size=50000",
            { compression = CT, read_limit = 50000 }))
        local m = recv(c:channel())
        assert(#m.data == 50000)
        c:close()
        c = assert(websocket.connect("@RAW@/big?size=50001", { compression = CT, read_limit = 50000 }))
        local v, ok = c:channel():receive()
        assert(v == nil and ok == false, "message over the limit was delivered")
        assert(c:info().close_code == 1009, tostring(c:info().close_code))
    end)
end

test("compressed echo, large and many, in both modes", function()
    for _, mode in ipairs { CT, NC } do
        local c, err = websocket.connect("@BASE@/echo", { compression = mode })
        assert(c, err and err:message())
        local ext = c:info().extensions
        assert(ext and ext:find("permessage-deflate", 1, true), "not negotiated: " .. tostring(ext))
        local ch = c:channel()
        local big = string.rep("The quick brown fox jumps over the lazy dog. ", 120000) -- 5.4 MB
        assert(c:send(big))
        assert(recv(ch).data == big, "5 MB compressible echo differs")
        local hard = noise(300000, mode)
        assert(c:send(hard, websocket.BINARY))
        local m = recv(ch)
        assert(m.type == "binary" and m.data == hard, "incompressible echo differs")
        for i = 1, 300 do
            assert(c:send(string.rep(tostring(i), i)))
        end
        for i = 1, 300 do
            local mm = recv(ch)
            assert(mm.data == string.rep(tostring(i), i), "message " .. i)
        end
        assert(c:send(""))
        assert(recv(ch).data == "")
        c:close()
    end
end)

test("compressed messages from the server: /big and /blast", function()
    local size = 3 * 1024 * 1024 + 5
    local c = assert(websocket.connect("@BASE@/big?size=" .. size, { compression = CT }))
    local m = recv(c:channel())
    assert(m.type == "binary" and #m.data == size)
    for _, i in ipairs { 0, 1, 250, 251, 100000, size - 1 } do
        assert(m.data:byte(i + 1) == i % 251, "byte " .. i)
    end
    c:close()
    c = assert(websocket.connect("@BASE@/blast?n=3000&size=300&type=text",
        { compression = CT, channel_capacity = 1 }))
    local ch, n = c:channel(), 0
    while true do
        local mm = recv(ch, "blast")
        if mm.data == "END" then break end
        assert(mm.data == string.rep("x", 300))
        n = n + 1
    end
    assert(n == 3000, "got " .. n)
    c:close()
end)

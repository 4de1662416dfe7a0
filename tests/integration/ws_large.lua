-- Large messages through the broker's direct payload reads (broker/conn.c:
-- payloads of frames of 16 KiB and more are read from the socket straight
-- into a ring record). The raw server's /frames sends small and large text
-- and binary messages, fragmented ones with a ping between fragments, one
-- larger than the largest ring record, and (kind=bad_utf8) invalid UTF-8
-- deep inside a large text message. Every message is compared byte for byte
-- with what the server built; `piece` makes the server write in small pieces
-- so that reads end inside payloads and a record is committed part-filled.
-- servers: raw

local CHARS = { "a", "\u{e9}", "\u{20ac}", "\u{1f600}", "z", "\u{df}" }

-- The server's text_payload(size, seed): valid UTF-8 of exactly size bytes.
local function text_payload(size, seed)
    local out, n, i = {}, 0, seed
    while n < size do
        local ch = CHARS[i % #CHARS + 1]
        if n + #ch > size then ch = string.rep("x", size - n) end
        out[#out + 1] = ch
        n = n + #ch
        i = i + 1
    end
    return table.concat(out)
end

local BLOCK
do
    local t = {}
    for i = 0, 250 do t[#t + 1] = string.char(i) end
    BLOCK = table.concat(t)
end

-- The server's pattern(size): byte i is i % 251.
local function pattern(size)
    return string.rep(BLOCK, size // 251 + 1):sub(1, size)
end

local function expected()
    local sizes = { 10, 20000, 70000, 5, 16384, 16383, 65536, (1 << 20) + 100, 300000, 3 }
    local want = {}
    for i, size in ipairs(sizes) do
        local k = i - 1
        if k % 2 == 1 then
            want[#want + 1] = { type = "binary", data = pattern(size) }
        else
            want[#want + 1] = { type = "text", data = text_payload(size, k) }
        end
    end
    want[#want + 1] = { type = "text", data = text_payload(70020, 7) }
    want[#want + 1] = { type = "binary", data = pattern(60000) }
    return want
end

local function first_diff(a, b)
    for i = 1, math.min(#a, #b) do
        if a:byte(i) ~= b:byte(i) then return i end
    end
    return math.min(#a, #b) + 1
end

local function check_stream(url, capacity, pause)
    local c = assert(websocket.connect(url, { read_limit = 4 << 20, channel_capacity = capacity }))
    local ch = c:channel()
    local want = expected()
    for i, w in ipairs(want) do
        if pause then time.sleep(pause) end
        local m, ok = ch:receive()
        assert(ok, "channel closed before message " .. i)
        assert(m.type == w.type, "message " .. i .. ": type " .. m.type)
        if m.data ~= w.data then
            error(string.format("message %d: %d bytes, want %d, first difference at byte %d",
                i, #m.data, #w.data, first_diff(m.data, w.data)))
        end
    end
    local m = assert(ch:receive())
    assert(m.data == "END", "after the stream: " .. #m.data .. " bytes")
    c:close()
end

test("large and small frames arrive intact (one write)", function()
    check_stream("@BASE@/frames")
end)

test("large and small frames arrive intact (written in 7000-byte pieces)", function()
    check_stream("@BASE@/frames?piece=7000")
end)

test("large and small frames arrive intact (odd 1500-byte pieces)", function()
    check_stream("@BASE@/frames?piece=1500")
end)

-- A full channel pauses reading right after a directly read frame; the
-- bytes read behind it wait for the script (they were once fed at once, one
-- message beyond the channel's capacity: a fatal error in the worker).
test("large and small frames arrive intact into a channel of 1 with a slow reader", function()
    for _ = 1, 3 do check_stream("@BASE@/frames", 1, "2ms") end
end)

test("large and small frames arrive intact over TLS", function()
    check_stream("@TLS_RAW@/frames")
end)

test("large and small frames arrive intact over TLS in pieces", function()
    check_stream("@TLS_RAW@/frames?piece=7000")
end)

test("invalid UTF-8 deep inside a large text message fails with 1007", function()
    for _, piece in ipairs({ 0, 7000 }) do
        local c = assert(websocket.connect("@BASE@/frames?kind=bad_utf8&piece=" .. piece,
            { read_limit = 4 << 20 }))
        local ch = c:channel()
        local want = expected()
        for i = 1, #want do
            local m, ok = ch:receive()
            assert(ok, "piece " .. piece .. ": closed before message " .. i)
            assert(m.data == want[i].data, "piece " .. piece .. ": message " .. i .. " differs")
        end
        local m, ok = ch:receive()
        assert(not ok and m == nil, "piece " .. piece .. ": the invalid message was delivered")
        local info = c:info()
        assert(info.close_code == 1007, "piece " .. piece .. ": close code "
            .. tostring(info.close_code))
        assert(info.closed_by ~= "server", "piece " .. piece .. ": closed by the server")
    end
end)

-- Our sends: binary payloads of 4 KiB and more are passed from the worker's
-- ring straight into the masking copy (broker/worker.c PASS_MIN); text ones
-- are copied and checked. Both come back byte for byte.
test("large binary and text messages echo intact", function()
    local c = assert(websocket.connect("@BASE@/echo", { read_limit = 8 << 20 }))
    local ch = c:channel()
    for _, size in ipairs({ 4095, 4096, 70000, (1 << 20) + 100, 3 << 20 }) do
        for _, kind in ipairs({ "binary", "text" }) do
            local data = kind == "binary" and pattern(size) or text_payload(size, size)
            assert(c:send(data, kind == "binary" and websocket.BINARY or websocket.TEXT))
            local m = assert(ch:receive())
            assert(m.type == kind, size .. " " .. kind .. ": came back as " .. m.type)
            if m.data ~= data then
                error(string.format("%d %s: %d bytes back, first difference at byte %d", size,
                    kind, #m.data, first_diff(m.data, data)))
            end
        end
    end
    c:close()
end)

-- After the script's close() with a full channel the broker reads on to the
-- server's close reply and drops whole messages arriving meanwhile; a large
-- frame being dropped must not be read directly into the worker's ring.
test("close with a full channel while large frames stream: whole messages only", function()
    for round = 1, 3 do
        local c = assert(websocket.connect("@BASE@/blast?n=400&size=70000&type=binary",
            { channel_capacity = 2 }))
        time.sleep("50ms") -- the channel fills, reading pauses
        local t0 = time.now()
        assert(c:close())
        local ms = time.now():sub(t0) / time.MILLISECOND
        assert(ms < 3000, "round " .. round .. ": close took " .. ms .. " ms")
        local n = 0
        while true do
            local m, ok = c:channel():receive()
            if not ok then break end
            assert(m.type == "binary" and #m.data == 70000,
                "round " .. round .. ": a message of " .. #m.data .. " bytes after close")
            n = n + 1
        end
        assert(n >= 1 and n <= 3, "round " .. round .. ": drained " .. n)
    end
end)

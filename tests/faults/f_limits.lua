-- Hostile sizes: a decompression bomb, absurd declared frame lengths and a
-- flood of empty continuation frames. Each must end in a bounded time with
-- the right close code, deliver what came before, and keep memory bounded
-- (run.sh checks the broker's peak RSS against the cap below).
-- max_broker_rss_mib: 48

local function drain(ch)
    local got = {}
    while true do
        local m, ok = ch:receive()
        if not ok then return got end
        got[#got + 1] = m.data
    end
end

-- Messages up to and including "END", or nil if the channel closed first.
local function drain_until_end(c)
    local got = {}
    while true do
        local m, ok = c:channel():receive()
        if not ok then return nil end
        got[#got + 1] = m.data
        if m.data == "END" then return got end
    end
end

local function ms_since(t0) return time.now():sub(t0) // 1000000 end

test("deflate bomb (1 GiB of zeros, 1 KiB frames) with read_limit 64 KiB -> 1009", function()
    local t0 = time.now()
    local c = assert(websocket.connect("@FAULT@/bomb?frag=1024", {
        compression = websocket.COMPRESSION.CONTEXT_TAKEOVER, read_limit = 64 * 1024 }))
    assert(c:info().extensions and c:info().extensions:find("permessage%-deflate"),
        "deflate not negotiated")
    local got = drain(c:channel())
    assert(#got == 0, "a part of the bomb was delivered")
    local i = c:info()
    assert(i.state == "closed" and i.close_code == 1009, tostring(i.close_code))
    assert(ms_since(t0) < 10000, "took " .. ms_since(t0) .. " ms")
end)

test("deflate bomb in one frame (1 MiB on the wire) with read_limit 64 KiB -> 1009", function()
    local c = assert(websocket.connect("@FAULT@/bomb", {
        compression = websocket.COMPRESSION.CONTEXT_TAKEOVER, read_limit = 64 * 1024 }))
    assert(#drain(c:channel()) == 0)
    assert(c:info().close_code == 1009, tostring(c:info().close_code))
end)

test("deflate bomb with the default read_limit (16 MiB) -> 1009", function()
    local c = assert(websocket.connect("@FAULT@/bomb", {
        compression = websocket.COMPRESSION.NO_CONTEXT }))
    assert(#drain(c:channel()) == 0)
    assert(c:info().close_code == 1009, tostring(c:info().close_code))
end)

test("bomb of exactly read_limit bytes is delivered whole", function()
    local c = assert(websocket.connect("@FAULT@/bomb?size=" .. 4 * 1024 * 1024, {
        compression = websocket.COMPRESSION.CONTEXT_TAKEOVER, read_limit = 4 * 1024 * 1024 }))
    local m = assert(c:channel():receive())
    assert(m.type == "binary" and #m.data == 4 * 1024 * 1024, #m.data)
    assert(m.data:sub(1, 8) == string.rep("\0", 8) and m.data:sub(-8) == string.rep("\0", 8))
    c:close()
end)

for _, case in ipairs {
    { path = "/len63", code = 1009, what = "declared length 2^63-1" },
    { path = "/len64", code = 1002, what = "declared length with the top bit set" },
    { path = "/len32wrap", code = 1009, what = "declared length 2^32+5 (wraps to 5 in 32 bits)" },
    { path = "/len32max", code = 1009, what = "declared length 2^32-1" },
} do
    test(case.what .. " -> " .. case.code .. " after the earlier messages", function()
        local t0 = time.now()
        local c = assert(websocket.connect("@FAULT@" .. case.path .. "?n=3"))
        local got = drain(c:channel())
        assert(#got == 3 and got[1] == "m1" and got[3] == "m3", "got " .. #got)
        local i = c:info()
        assert(i.state == "closed" and i.close_code == case.code, tostring(i.close_code))
        assert(ms_since(t0) < 5000)
    end)
end

test("declared 2^32+5 with the largest read_limit (128 MiB) -> 1009", function()
    local c = assert(websocket.connect("@FAULT@/len32wrap?n=1", { read_limit = 128 * 1024 * 1024 }))
    local got = drain(c:channel())
    assert(#got == 1 and got[1] == "m1")
    assert(c:info().close_code == 1009, tostring(c:info().close_code))
end)

test("a million empty continuation frames: delivered or refused, never hung", function()
    local t0 = time.now()
    local c = assert(websocket.connect("@FAULT@/empty_cont?n=1000000", { read_timeout = "30s" }))
    local got = drain_until_end(c)
    local ms = ms_since(t0)
    assert(ms < 30000, "took " .. ms .. " ms")
    if got then
        assert(got[1] == "ab" and got[2] == "END", tostring(got[1]))
    else
        local code = c:info().close_code
        assert(code == 1008 or code == 1009 or code == 1002, tostring(code))
    end
    c:close()
end)

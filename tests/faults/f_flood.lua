-- Floods from a hostile server: a million pings while it never reads our
-- pongs, and (in f_limits.lua) a million empty continuation frames. The
-- broker's memory must stay bounded (run.sh checks its peak RSS against the
-- cap below) and nothing may hang.
-- max_broker_rss_mib: 40

local function ms_since(t0) return time.now():sub(t0) // 1000000 end

test("a million pings from a server that never reads: bounded, no hang", function()
    local t0 = time.now()
    local c = assert(websocket.connect("@FAULT@/ping_flood?n=1000000&hold=1000"))
    local got = {}
    while true do
        local m, ok = c:channel():receive()
        if not ok then break end
        got[#got + 1] = m.data
    end
    assert(ms_since(t0) < 30000, "took " .. ms_since(t0) .. " ms")
    assert(#got == 1 and got[1] == "END", "got " .. #got)
    assert(c:info().close_code == 1006, tostring(c:info().close_code))
end)

test("ten pings in one burst from a reading server all get their pongs, in order", function()
    local c = assert(websocket.connect("@FAULT@/pings?n=10"))
    local m = assert(c:channel():receive())
    assert(m.data == "pongs=p1,p2,p3,p4,p5,p6,p7,p8,p9,p10", m.data)
    c:close()
end)

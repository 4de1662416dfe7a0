-- TLS failures: untrusted certificate, certificate for another name, a peer
-- that accepts TCP and then says nothing, closes, resets, or answers in plain
-- text, and a TLS connection dropped mid-message. Every dial failure is
-- `nil, err` (INTERNAL, retryable, stage "tls" or "timeout") within its bound.

local function ms_since(t0) return time.now():sub(t0) // 1000000 end

local function dial_fails(url, stages, opts)
    local t0 = time.now()
    local c, err = websocket.connect(url, opts)
    local ms = ms_since(t0)
    assert(c == nil and err, "connected to " .. url)
    assert(err:kind() == errors.INTERNAL and err:retryable() == true,
        err:kind() .. " " .. tostring(err:retryable()))
    local st = err:details().stage
    local okst = false
    for _, s in ipairs(stages) do okst = okst or st == s end
    assert(okst, "stage " .. tostring(st) .. ": " .. err:message())
    return err, ms
end

test("sanity: the trusted TLS listener works", function()
    local c = assert(websocket.connect("@TLS_GOOD@/echo"))
    assert(c:send("secure"))
    assert(c:channel():receive().data == "secure")
    c:close()
end)

test("untrusted certificate -> tls stage error", function()
    local err, ms = dial_fails("@TLS_UNTRUSTED@/echo", { "tls" })
    assert(ms < 5000)
    assert(err:message():lower():find("certif") or err:message():lower():find("verif"), err:message())
end)

test("certificate for another host name -> tls stage error", function()
    local err = dial_fails("@TLS_WRONGHOST@/echo", { "tls" })
    assert(err:message():lower():find("certif") or err:message():lower():find("host")
        or err:message():lower():find("verif"), err:message())
end)

test("TLS peer that never answers: dial_timeout fires", function()
    local _, ms = dial_fails("@TLS_SILENT@/echo", { "timeout", "tls" }, { dial_timeout = "1s" })
    assert(ms >= 900 and ms < 4000, "after " .. ms .. " ms")
end)

test("TLS peer that closes after the ClientHello", function()
    local _, ms = dial_fails("@TLS_CLOSE@/echo", { "tls" }, { dial_timeout = "10s" })
    assert(ms < 5000)
end)

test("TLS peer that resets after the ClientHello", function()
    local _, ms = dial_fails("@TLS_RST@/echo", { "tls" }, { dial_timeout = "10s" })
    assert(ms < 5000)
end)

test("plain-text HTTP answer to a ClientHello", function()
    local _, ms = dial_fails("@TLS_GARBAGE@/echo", { "tls" }, { dial_timeout = "10s" })
    assert(ms < 5000)
end)

test("TLS connection dropped mid-message (no close_notify) -> 1006, all delivered", function()
    local c = assert(websocket.connect("@TLS_GOOD@/fin_mid?n=20&partial=50"))
    local got = {}
    while true do
        local m, ok = c:channel():receive()
        if not ok then break end
        got[#got + 1] = m.data
    end
    assert(#got == 20 and got[20] == "m20", "got " .. #got)
    assert(c:info().close_code == 1006, tostring(c:info().close_code))
end)

test("many failed TLS dials in a row leave the broker usable", function()
    for _ = 1, 20 do
        assert(websocket.connect("@TLS_UNTRUSTED@/echo") == nil)
        assert(websocket.connect("@TLS_GARBAGE@/echo") == nil)
    end
    local c = assert(websocket.connect("@TLS_GOOD@/echo"))
    assert(c:send("still fine") and c:channel():receive().data == "still fine")
    c:close()
end)

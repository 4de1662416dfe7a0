-- wss:// through OpenSSL: echo over TLS against every server, and (once, on
-- the raw server) the TLS failure rows: a self-signed certificate that is not
-- trusted, a trusted certificate for another host name (by name and by IP
-- literal), a server that never answers the TLS handshake, and SNI sent for
-- names but not for IP literals. run.sh passes --ca-file with the test
-- certificate and the one for "other.test".
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

-- A TLS dial failure: nil, err INTERNAL, retryable, stage "tls", and a
-- message that contains every pattern in `want`.
local function tls_fails(url, want)
    local c, err = websocket.connect(url, { dial_timeout = "10s" })
    assert(c == nil, url .. ": connected although the certificate is not acceptable")
    assert(err:kind() == errors.INTERNAL, "kind " .. tostring(err:kind()))
    assert(err:retryable() == true, "TLS failure must be retryable")
    local d = err:details()
    assert(d.stage == "tls", "stage " .. tostring(d.stage) .. ": " .. err:message())
    assert(d.url == url, tostring(d.url))
    for _, p in ipairs(want) do
        assert(err:message():lower():find(p, 1, true), "'" .. p .. "' not in: " .. err:message())
    end
    return err
end

test("wss echo text, binary and a large message", function()
    local c, err = websocket.connect("@TLS_BASE@/echo")
    assert(c, err and err:message())
    local ch = c:channel()
    assert(c:send("over TLS"))
    assert(recv(ch).data == "over TLS")
    local bin = string.rep("\0\1\2\3\254\255", 1000)
    assert(c:send(bin, websocket.BINARY))
    local m = recv(ch)
    assert(m.type == "binary" and m.data == bin)
    local big = string.rep("0123456789abcdef", 256 * 1024) -- 4 MiB, many TLS records
    assert(c:send(big))
    assert(recv(ch).data == big, "4 MiB echo over TLS differs")
    assert(c:ping())
    local i = c:info()
    assert(i.state == "open" and i.url == "@TLS_BASE@/echo")
    assert(c:close(websocket.CLOSE_CODES.NORMAL, "tls done"))
    i = c:info()
    assert(i.state == "closed" and i.closed_by == "client" and i.close_code == 1000)
end)

test("wss server close delivers queued messages first", function()
    local c = assert(websocket.connect("@TLS_BASE@/close?code=4001&reason=tls%20bye&n=40",
        { channel_capacity = 2 }))
    local got = drain(c:channel())
    assert(#got == 40, "got " .. #got)
    for i = 1, 40 do assert(got[i] == "m" .. i) end
    local i = c:info()
    assert(i.close_code == 4001 and i.close_reason == "tls bye" and i.closed_by == "server",
        tostring(i.close_code) .. " " .. tostring(i.close_reason))
end)

test("wss blast with channel_capacity 1", function()
    local c = assert(websocket.connect("@TLS_BASE@/blast?n=5000&size=100&type=binary",
        { channel_capacity = 1 }))
    local ch, n = c:channel(), 0
    while true do
        local m = recv(ch, "blast")
        if m.data == "END" then break end
        assert(#m.data == 100 and m.type == "binary")
        n = n + 1
    end
    assert(n == 5000, "got " .. n)
    c:close()
end)

if "@SERVER@" == "raw" then
    test("self-signed certificate not in the CA file is refused", function()
        tls_fails("@TLS_UNTRUSTED@/echo", { "verif", "self" })
    end)

    test("trusted certificate for another host name is refused", function()
        tls_fails("@TLS_WRONGHOST@/echo", { "verif", "hostname" })
    end)

    test("trusted certificate without the IP literal is refused", function()
        tls_fails("@TLS_WRONGHOST_IP@/echo", { "verif", "ip address" })
    end)

    test("no option switches verification off", function()
        for _, opts in ipairs { { insecure = true }, { verify = false }, { tls = { verify = false } },
            { ca_file = "/etc/ssl/certs/ca-certificates.crt" }, { insecure_skip_verify = true } } do
            local k = next(opts)
            local c, err = websocket.connect("@TLS_UNTRUSTED@/echo", opts)
            assert(c == nil and err:kind() == errors.INVALID, k .. " was accepted")
            assert(err:message():find("unknown option", 1, true), err:message())
        end
    end)

    test("a refused certificate is refused every time (nothing cached)", function()
        for _ = 1, 3 do tls_fails("@TLS_UNTRUSTED@/echo", { "verif" }) end
        local c = assert(websocket.connect("@TLS_RAW@/echo"))
        c:close()
    end)

    test("SNI is sent for a host name", function()
        local c, err = websocket.connect("@TLS_RAW@/sni")
        assert(c, err and err:message())
        local m = recv(c:channel())
        assert(m.data == "sni=localhost", m.data)
        c:close()
    end)

    test("no SNI for an IP literal, certificate checked against the IP", function()
        local c, err = websocket.connect("@TLS_RAW_IP@/sni")
        assert(c, err and err:message())
        local m = recv(c:channel())
        assert(m.data == "sni=", m.data)
        c:close()
    end)

    test("TLS handshake that never gets an answer times out", function()
        local t0 = time.now()
        local c, err = websocket.connect("@TLS_SILENT@/echo", { dial_timeout = "300ms" })
        local ms = time.now():sub(t0) / time.MILLISECOND
        assert(c == nil)
        assert(err:kind() == errors.INTERNAL and err:retryable() == true, tostring(err))
        assert(err:details().stage == "timeout", tostring(err:details().stage))
        assert(err:message():find("TLS handshake", 1, true), err:message())
        assert(ms >= 250 and ms < 5000, "took " .. ms .. " ms")
    end)

    test("wss echo with deflate over TLS", function()
        local c = assert(websocket.connect("@TLS_RAW@/rsv",
            { compression = websocket.COMPRESSION.CONTEXT_TAKEOVER }))
        assert(c:send(string.rep("tls+deflate ", 100)))
        local m = recv(c:channel())
        assert(m.data:find("rsv1=1", 1, true) and m.data:find("data_len=1200", 1, true), m.data)
        c:close()
    end)
end

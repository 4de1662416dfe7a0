-- A slow consumer with many connections: twenty connections whose servers
-- blast 100 MB each are never read, while other connections of the same
-- script keep flowing at full speed. The broker stops reading the stalled
-- sockets (channel_capacity), so its memory stays bounded (cap below).
-- max_broker_rss_mib: 64

local function ms_since(t0) return time.now():sub(t0) // 1000000 end

local stalled = {}

test("twenty stalled connections open and fill up", function()
    for i = 1, 20 do
        stalled[i] = assert(websocket.connect("@C@/blast?n=1000000&size=100&type=binary",
            { channel_capacity = 8 }))
    end
    time.sleep("500ms") -- let them fill every buffer on the way
    -- each still has its first message ready
    for i = 1, 20 do
        local m = assert(stalled[i]:channel():receive())
        assert(#m.data == 100)
    end
end)

test("other connections keep flowing while those are stalled", function()
    local t0 = time.now()
    local done = channel.new(5)
    for k = 1, 5 do
        coroutine.spawn(function()
            local c = assert(websocket.connect("@C@/blast?n=50000&size=64&type=text"))
            local n = 0
            while true do
                local m = assert(c:channel():receive())
                if m.data == "END" then break end
                n = n + 1
            end
            c:close()
            done:send(n)
        end)
    end
    for _ = 1, 5 do
        local r = channel.select { done:case_receive(), time.after("30s"):case_receive() }
        assert(r.channel == done, "a flowing connection stalled")
        assert(r.value == 50000, "got " .. tostring(r.value))
    end
    local ms = ms_since(t0)
    print(string.format("# 250000 messages on 5 connections next to 20 stalled ones in %d ms", ms))
    assert(ms < 30000)
    -- request/response still answers promptly
    local e = assert(websocket.connect("@C@/echo"))
    for i = 1, 100 do
        assert(e:send("q" .. i))
        assert(e:channel():receive().data == "q" .. i)
    end
    e:close()
end)

test("stalled connections resume and close cleanly", function()
    for i = 1, 10 do
        local ch = stalled[i]:channel()
        for _ = 1, 100 do assert(#assert(ch:receive()).data == 100) end
    end
    -- close with a full channel while the server still streams: the broker
    -- reads on to the close reply (dropping what arrives after close), so
    -- close answers at once, and what was queued before is still delivered
    for i = 1, 20 do
        local t0 = time.now()
        assert(stalled[i]:close())
        local ms = ms_since(t0)
        assert(ms < 2000, "close took " .. ms .. " ms")
        local info = stalled[i]:info()
        assert(info.close_code == 1000 and info.closed_by == "client", tostring(info.close_code))
        local n = 0
        while true do
            local m, ok = stalled[i]:channel():receive()
            if not ok then break end
            assert(#m.data == 100)
            n = n + 1
        end
        assert(n >= 1 and n <= 8 + 1, "drained " .. n)
    end
end)

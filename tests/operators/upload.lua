-- Send rate: 2 MiB in 64 KiB messages, timed; the server reports what it got.
local t0 = time.now()
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/count")
if not c then print("upload: " .. err:message()) return end
local chunk = string.rep("u", 65536)
for i = 1, 32 do
    local ok, e = c:send(chunk, websocket.BINARY)
    if not ok then print("upload: send failed " .. e:message()) return end
end
c:send("REPORT")
local m = c:channel():receive()
c:close()
print(string.format("upload: %s in %d ms", m and m.data or "nil", time.now():sub(t0) // 1000000))

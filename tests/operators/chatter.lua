-- Send message rate: 60 tiny messages (far below the 1 MiB send window), then
-- REPORT; the server's answer shows when they all arrived.
local t0 = time.now()
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/count")
if not c then print("chatter: " .. err:message()) return end
for i = 1, 60 do
    local ok, e = c:send("m")
    if not ok then print("chatter: send failed " .. e:message()) return end
end
c:send("REPORT")
local m = c:channel():receive()
c:close()
print(string.format("chatter: %s in %d ms", m and m.data or "nil", time.now():sub(t0) // 1000000))

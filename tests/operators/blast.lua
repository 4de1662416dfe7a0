-- Receive rate: 60 small messages, timed.
local t0 = time.now()
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/blast?n=60&size=10")
if not c then print("blast: " .. err:message()) return end
local ch, n = c:channel(), 0
while true do
    local m, ok = ch:receive()
    if not ok then break end
    n = n + 1
    if m.data == "END" then break end
end
c:close()
print(string.format("blast: %d msgs in %d ms", n, time.now():sub(t0) // 1000000))

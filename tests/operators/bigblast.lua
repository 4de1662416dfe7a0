-- Receive byte rate: 12 messages of 64 KiB (768 KiB), timed.
local t0 = time.now()
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/blast?n=12&size=65536")
if not c then print("bigblast: " .. err:message()) return end
local ch, n, bytes = c:channel(), 0, 0
while true do
    local m, ok = ch:receive()
    if not ok then break end
    n = n + 1
    if m.data == "END" then break end
    bytes = bytes + #m.data
end
c:close()
print(string.format("bigblast: %d msgs %d bytes in %d ms", n, bytes, time.now():sub(t0) // 1000000))

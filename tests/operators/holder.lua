-- Holds one connection until the broker closes it, then reports the code.
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/echo?holder=1")
if not c then print("holder: " .. err:message()) return end
print("holder: open")
local ch = c:channel()
local ok_sends = 0
for i = 1, 300 do
    local sent = c:send("x")
    if not sent then break end
    local m, ok = ch:receive()
    if not ok then break end
    ok_sends = ok_sends + 1
    time.sleep("100ms")
end
local info = c:info()
print("holder: closed code " .. tostring(info.close_code) .. " by " .. tostring(info.closed_by) ..
      " after " .. ok_sends)

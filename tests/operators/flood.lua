-- Send message rate beyond what throttling can hold: 3000 tiny messages at
-- once; the broker closes the connection with 1013 (try again later).
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/count")
if not c then print("flood: " .. err:message()) return end
local sent = 0
for i = 1, 3000 do
    if not c:send("f") then break end
    sent = sent + 1
end
local ch = c:channel()
while true do
    local m, ok = ch:receive()
    if not ok then break end
end
local info = c:info()
print("flood: closed code " .. tostring(info.close_code) .. " by " .. tostring(info.closed_by) ..
      " reason " .. tostring(info.close_reason))

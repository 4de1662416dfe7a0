-- The other tenant's work while a neighbour hits its quotas.
local c, err = websocket.connect("ws://127.0.0.1:@PORT@/echo")
if not c then print("steady: " .. err:message()) return end
local ch, good = c:channel(), 0
for i = 1, 20 do
    c:send("m" .. i)
    local m = ch:receive()
    if m and m.data == "m" .. i then good = good + 1 end
    time.sleep("100ms")
end
c:close()
print("steady: " .. good .. " of 20")

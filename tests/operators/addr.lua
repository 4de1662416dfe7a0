-- Address policy: "localhost" resolves to loopback; only a tenant whose
-- allow_addresses has loopback may reach it.
local c, err = websocket.connect("ws://localhost:@PORT@/echo", {dial_timeout = "5s"})
if c then
    c:send("hi")
    local m = c:channel():receive()
    print("addr: ok " .. tostring(m and m.data))
    c:close()
else
    print("addr: " .. err:kind() .. " " .. err:message())
end

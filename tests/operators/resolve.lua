-- Address policy with the test's own /etc/hosts (see run.sh).
local c, err = websocket.connect("ws://@HOST@:@PORT@/echo", {dial_timeout = "5s"})
if c then
    c:send("hi")
    local m = c:channel():receive()
    print("resolve: ok " .. tostring(m and m.data))
    c:close()
else
    print("resolve: " .. err:kind() .. " " .. err:message())
end

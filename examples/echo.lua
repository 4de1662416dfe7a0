-- A minimal round trip: connect, send, receive the echo, ping, close.
local client, err = websocket.connect("ws://127.0.0.1:8765/echo", {
    dial_timeout = "5s",
    compression = websocket.COMPRESSION.CONTEXT_TAKEOVER,
})
if err then
    print("connect failed: " .. err:message())
    return
end
client:send("hello from a sandboxed worker")
local msg = client:channel():receive()
print("echo: " .. msg.data)
print("ping: " .. tostring(client:ping()))
client:close(websocket.CLOSE_CODES.NORMAL, "done")
print("info: closed by " .. client:info().closed_by)

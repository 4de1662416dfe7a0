-- The seed's "Echtzeit-Chat" example, unchanged except for its URL (the local
-- demo server) and a few lines at the end that call it: a second task joins
-- the same room and says hello, and the demo server closes the room after
-- four messages so the example ends by itself.
local token = "demo-token"

local function connect_chat(room_id, on_message)
    local client, err = websocket.connect("ws://127.0.0.1:8765/chat?close_after=4", {
        headers = {["Authorization"] = "Bearer " .. token}
    })
    if err then
        return nil, err
    end

    -- Raum beitreten
    client:send(json.encode({
        type = "join",
        room = room_id
    }))

    -- Nachrichtenschleife
    local ch = client:channel()
    while true do
        local msg, ok = ch:receive()
        if not ok then break end

        local data = json.decode(msg.data)
        on_message(data)
    end

    client:close()
end

-- Driver (not part of the seed example): a friend joins and talks.
coroutine.spawn(function()
    time.sleep("200ms")
    local friend = assert(websocket.connect("ws://127.0.0.1:8765/chat"))
    friend:send(json.encode({type = "join", room = "lobby"}))
    for i = 1, 3 do
        friend:send(json.encode({type = "message", room = "lobby", text = "hello #" .. i}))
        time.sleep("100ms")
    end
    friend:close()
end)

local ok, err = connect_chat("lobby", function(data)
    print(string.format("chat: %s %s", data.type, data.text or data.room))
end)
if err then
    print("chat failed: " .. tostring(err))
end

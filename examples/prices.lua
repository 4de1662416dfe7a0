-- The seed's "Preis-Stream mit Keep-Alive" example, unchanged except for its
-- URL (the local demo server, which stops after 20 updates) and the
-- update_price function it calls.
local function update_price(symbol, value)
    print(string.format("%-8s %10.2f", symbol, value))
end

local client = websocket.connect("ws://127.0.0.1:8765/prices?interval=100&count=20")

client:send(json.encode({
    action = "subscribe",
    symbols = {"BTC-USD", "ETH-USD"}
}))

local ch = client:channel()
local heartbeat = time.after("30s")

while true do
    local r = channel.select {
        ch:case_receive(),
        heartbeat:case_receive()
    }

    if r.channel == heartbeat then
        client:ping()
        heartbeat = time.after("30s")
    elseif not r.ok then
        break  -- Verbindung geschlossen
    else
        local price = json.decode(r.value.data)
        update_price(price.symbol, price.value)
    end
end

client:close()

-- Policy in action: this URL is not allowed by the demo's --allow rule.
local client, err = websocket.connect("ws://127.0.0.1:8765/admin")
if err then
    print(string.format("denied as expected: kind=%s retryable=%s message=%s",
        err:kind(), tostring(err:retryable()), err:message()))
end

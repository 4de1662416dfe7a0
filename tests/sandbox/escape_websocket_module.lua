-- The websocket module is read-only like the other libraries, and a
-- connection to an address no rule allows is refused by the broker.
-- exit: 1
-- stderr: PermissionDenied|not allowed|denied
assert(not pcall(function() websocket.connect = print end))
assert(not pcall(rawset, websocket, "connect", print))
local ws, err = websocket.connect("ws://127.0.0.1:1/")
assert(ws == nil, "connected without a rule")
error(tostring(err))

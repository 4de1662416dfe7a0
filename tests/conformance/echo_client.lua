-- Conformance echo client: runs inside a real sandboxed worker through the
-- real broker (tests/conformance/run.sh) against conformance_server.py.
--
-- It fetches the case list from @CONF@/cases (one JSON text message:
-- [{n=, id=, opts=, connect=}]), then for each case connects to
-- @CONF@/case/N with that case's websocket.connect options (compression,
-- read_limit, protocols, dial_timeout ...), prints `case N connected` or
-- `case N connect failed: MESSAGE`, and echoes every message back with the
-- same type until the channel closes. The server judges what came back on
-- the wire; run.sh merges the connect lines with the server's verdicts.
-- Pings are answered by the broker itself; the script sees data only.
-- @ONLY@ (set by run.sh from CONF_ONLY) limits the run to case ids starting
-- with one of its comma-separated prefixes; empty means all.

local BASE = "@CONF@"
local ONLY = "@ONLY@"

local prefixes = {}
for p in ONLY:gmatch("[^,%s]+") do prefixes[#prefixes + 1] = p end

local function wanted(id)
    if #prefixes == 0 then return true end
    for _, p in ipairs(prefixes) do
        if id == p or id:sub(1, #p + 1) == p .. "." then return true end
    end
    return false
end

local function fetch_cases()
    local c, err = websocket.connect(BASE .. "/cases")
    assert(c, "cannot fetch the case list: " .. tostring(err))
    local m, ok = c:channel():receive()
    assert(ok, "case list: the channel closed without a message")
    local list = assert(json.decode(m.data))
    c:close()
    return list
end

local function echo(client)
    local ch = client:channel()
    local sending = true
    local n = 0
    while true do
        local m, ok = ch:receive()
        if not ok then break end
        n = n + 1
        if sending then
            local t = m.type == "binary" and websocket.BINARY or websocket.TEXT
            -- A send fails once the connection is closing; keep draining.
            if not client:send(m.data, t) then sending = false end
        end
    end
    return n
end

local ran = 0
for _, case in ipairs(fetch_cases()) do
    if wanted(case.id) then
        ran = ran + 1
        local t0 = time.now()
        local client, err = websocket.connect(BASE .. "/case/" .. case.n, case.opts)
        local ms = time.now():sub(t0) / time.MILLISECOND
        if not client then
            print(string.format("case %d connect failed: %s (after %d ms)", case.n,
                tostring(err), math.floor(ms)))
        else
            print(string.format("case %d connected", case.n))
            local n = echo(client)
            local info = client:info()
            client:close()
            if case.connect == "fail" then
                print(string.format("case %d (%s) echoed %d, close %s", case.n, case.id, n,
                    tostring(info.close_code)))
            end
        end
    end
end
print(string.format("echo client done: %d cases", ran))

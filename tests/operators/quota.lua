-- Connection quotas one by one: max_connections, max_read_limit,
-- max_channel_capacity, max_compression, connects_per_sec.
local U = "ws://127.0.0.1:@PORT@/echo"
local function try(opts)
    local c, e = websocket.connect(U, opts)
    if c then return c, "ok" end
    return nil, e:kind(), e:message()
end
local a, ka = try()
local b, kb = try()
local c3, k3, m3 = try()
print("conns: " .. ka .. " " .. kb .. " " .. k3 .. (m3 and (" " .. m3) or ""))
if a then a:close() end
if b then b:close() end
if c3 then c3:close() end
local function one(name, opts)
    local c, k, m = try(opts)
    if c then c:close() end
    print(name .. ": " .. k .. (m and (" " .. m) or ""))
end
one("read_limit", {read_limit = 2 * 1024 * 1024})
one("capacity", {channel_capacity = 100})
one("compression", {compression = websocket.COMPRESSION.CONTEXT_TAKEOVER})
local limited, okc = 0, 0
for i = 1, 12 do
    local c, k = try()
    if c then okc = okc + 1; c:close() elseif k == "RateLimited" then limited = limited + 1 end
end
print("rate: ok " .. okc .. " limited " .. limited)

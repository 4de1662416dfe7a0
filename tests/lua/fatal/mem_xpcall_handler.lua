-- expect: memory limit; the message handler cannot swallow it either
local ok = xpcall(function() return string.rep("z", 1 << 30) end,
                  function(m) return "handled: " .. tostring(m) end)
print("UNREACHABLE: xpcall swallowed it:", ok)

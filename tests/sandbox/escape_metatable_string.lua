-- The string metatable is a read-only stand-in: methods cannot be replaced.
-- exit: 1
-- stderr: read-only
local mt = getmetatable("")
assert(not pcall(setmetatable, mt, {}))
assert(not pcall(rawset, mt, "__index", {}))
assert(not pcall(function() string.format = print end))
mt.__index = {upper = function() return "pwned" end}
print("UNREACHABLE")

-- Library tables are read-only proxies with protected metatables.
-- exit: 1
-- stderr: cannot change a protected metatable
for _, lib in ipairs({table, math, coroutine, utf8, os, channel, time, json, errors}) do
    assert(not pcall(rawset, lib, "x", 1))
    assert(getmetatable(lib) == false)
end
setmetatable(math, {__index = function() return 0 end})
print("UNREACHABLE")

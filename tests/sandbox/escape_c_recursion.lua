-- Recursion through C (an __index function that indexes again) ends in the
-- C stack limit, an ordinary error.
-- args: --wall 20000
-- exit: 1
-- stderr: stack overflow
local t = setmetatable({}, {__index = function(t, k) return t[k .. "x"] end})
print("UNREACHABLE", t.a)

-- Unbounded Lua recursion ends in a stack overflow error (status 1).
-- args: --wall 20000
-- exit: 1
-- stderr: stack overflow
local function f(n) return 1 + f(n + 1) end
f(1)
print("UNREACHABLE")

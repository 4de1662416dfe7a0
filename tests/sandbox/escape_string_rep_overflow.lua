-- An impossible size is an ordinary error, not a crash.
-- exit: 1
-- stderr: resulting string too large
local s = string.rep("x", math.maxinteger)
print("UNREACHABLE", #s)

-- A huge string.rep hits the memory cap: the run ends with status 2.
-- args: --mem 16M
-- exit: 2
-- stderr: ended: memory cap
local s = string.rep("x", 1 << 30)
print("UNREACHABLE", #s)

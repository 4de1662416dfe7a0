-- expect: memory limit (a single huge allocation)
local s = string.rep("x", 1 << 30)
print("UNREACHABLE: unreachable", #s)

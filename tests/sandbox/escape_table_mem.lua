-- Growing a table without end, with pcall around it: memory cap, status 2.
-- args: --mem 16M --wall 20000
-- exit: 2
-- stderr: ended: memory cap
local t = {}
local ok = pcall(function()
    for i = 1, math.maxinteger do t[i] = {i} end
end)
print("UNREACHABLE: pcall returned", ok)

-- expect: memory limit, even though the growth happens inside pcall
local ok, err = pcall(function()
    local t = {}
    for i = 1, 1e9 do t[i] = i end
end)
print("UNREACHABLE: pcall swallowed the memory error:", ok, err)

-- expect: memory limit inside a coroutine driven by coroutine.resume
local co = coroutine.create(function()
    local parts = {}
    while true do parts[#parts + 1] = string.rep("y", 1 << 20) end
end)
local ok, err = coroutine.resume(co)
print("UNREACHABLE: resume swallowed the memory error:", ok, err)

-- expect: CPU time limit; a __close handler that spins during unwinding
local ok = pcall(function()
    local guard <close> = setmetatable({}, {__close = function()
        pcall(function() while true do end end)
        print("UNREACHABLE: inner pcall returned")
        while true do end
    end})
    while true do end
end)
print("UNREACHABLE: survived", ok)

-- expect: CPU time limit inside a coroutine (resume and wrap catch nothing)
local co = coroutine.create(function() while true do end end)
print("UNREACHABLE: resume returned", coroutine.resume(co))
local w = coroutine.wrap(function() while true do end end)
print("UNREACHABLE: pcall of wrap returned", pcall(w))
while true do end

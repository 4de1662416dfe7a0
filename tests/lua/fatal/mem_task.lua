-- expect: memory limit in a spawned task ends the whole run
local ch = channel.new()
coroutine.spawn(function()
    local t = {}
    while true do t[#t + 1] = {1, 2, 3, 4, 5, 6, 7, 8} end
end)
ch:receive() -- the main task waits forever; the task's failure must end the run

-- expect: deadlock (no task can run, no timer, no backend)
local ch = channel.new()
coroutine.spawn(function() ch:receive() end)
ch:receive()

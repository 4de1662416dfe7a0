-- expect: CPU time limit in a spawned task while main waits on a timer
coroutine.spawn(function()
    local x = 0
    while true do x = x + 1 end
end)
time.sleep("1h")

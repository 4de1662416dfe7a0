-- A task (coroutine.spawn) spinning while the main task sleeps.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit
coroutine.spawn(function() while true do end end)
time.sleep("10s")
print("UNREACHABLE")

-- The plain case: a Lua loop that never ends is stopped by the count hook.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit of 300 ms exceeded
-- stderr: ended: CPU budget \(exit status 3\)
local n = 0
while true do n = n + 1 end

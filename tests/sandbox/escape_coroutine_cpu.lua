-- A coroutine created by the script runs under the same count hook.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit
local co = coroutine.create(function() while true do end end)
local ok, err = coroutine.resume(co)
print("UNREACHABLE: resume returned", ok, err)

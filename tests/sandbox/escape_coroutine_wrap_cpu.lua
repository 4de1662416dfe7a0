-- Nested coroutines that yield to each other in a tight loop: the budget
-- error cannot be caught by the wrapping coroutine either.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit
local inner = coroutine.wrap(function()
    while true do coroutine.yield() end
end)
local outer = coroutine.wrap(function()
    while true do
        pcall(inner)
    end
end)
while true do
    pcall(outer)
end

-- A message handler that spins: the budget error raised inside the handler
-- makes Lua call the handler again, with hooks still disabled (Lua 5.4 leaves
-- them off after an error thrown from a hook), so only RLIMIT_CPU (SIGXCPU)
-- or the Lua hook (once lua/rt.c guards handlers) can end it. Either way the
-- end must be classified as the CPU budget.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: ended: CPU budget
xpcall(function() error("first") end, function() while true do end end)
print("UNREACHABLE")

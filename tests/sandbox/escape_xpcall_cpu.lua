-- A message handler that spins: the budget error raised inside the handler
-- would make Lua call the handler again with hooks disabled (Lua 5.4 leaves
-- them off after an error thrown from a hook). lua/rt.c's xpcall guard does
-- not run the script's handler once a limit was hit, so the Lua budget ends
-- the script with its own message, well before RLIMIT_CPU would.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit of 300 ms exceeded
xpcall(function() error("first") end, function() while true do end end)
print("UNREACHABLE")

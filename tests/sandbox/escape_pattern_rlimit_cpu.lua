-- Without a wall budget, a C call that spins is still stopped: RLIMIT_CPU
-- (the CPU budget rounded up to seconds, plus one) sends SIGXCPU. In a PID
-- namespace the worker is init and ends itself on SIGXCPU with exit status 24.
-- args: --cpu 100
-- exit: 3
-- stderr: ended: CPU budget \((signal|exit status) 24\)
local s = ("a"):rep(30) .. "b"
print(s:find(("a*"):rep(30) .. "c"))
print("UNREACHABLE")

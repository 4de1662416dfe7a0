-- Quadratic matching over a 1 MiB string: another long C call, stopped only
-- by the wall-clock watchdog (--cpu alone would not stop it before RLIMIT_CPU).
-- args: --cpu 200 --wall 1500
-- exit: 3
-- stderr: ended: wall-clock budget
local s = ("x"):rep(1 << 20)
print(s:find(".-y"))
print("UNREACHABLE")

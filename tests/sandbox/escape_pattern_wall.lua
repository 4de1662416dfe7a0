-- A pathological pattern keeps one C call (string.find) busy for ages: the
-- count hook never runs, so the broker's wall-clock watchdog kills the worker.
-- args: --wall 1000
-- exit: 3
-- stderr: killed \(wall-clock budget\)
-- stderr: ended: wall-clock budget \(signal 9\)
local s = ("a"):rep(30) .. "b"
print(s:find(("a*"):rep(30) .. "c"))
print("UNREACHABLE")

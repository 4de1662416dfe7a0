-- A script that just waits is ended by the wall-clock budget.
-- args: --wall 500
-- exit: 3
-- stderr: ended: wall-clock budget
time.sleep("1h")
print("UNREACHABLE")

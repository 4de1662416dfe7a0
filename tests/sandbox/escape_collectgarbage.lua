-- The collector cannot be stopped or tuned by the script.
-- exit: 1
-- stderr: invalid option 'stop'
assert(collectgarbage("count") > 0)
collectgarbage("stop")
print("UNREACHABLE")

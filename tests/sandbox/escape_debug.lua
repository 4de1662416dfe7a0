-- No debug library: no registry, no upvalue surgery, no hook removal.
-- exit: 1
-- stderr: attempt to index a nil value \(global 'debug'\)
debug.sethook()
print("UNREACHABLE")

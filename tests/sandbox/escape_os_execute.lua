-- os keeps only time and clock: no execute, getenv, remove, exit.
-- exit: 1
-- stderr: attempt to call a nil value \(field 'execute'\)
assert(os.getenv == nil and os.remove == nil and os.exit == nil and os.tmpname == nil)
os.execute("id > /tmp/pwned")
print("UNREACHABLE")

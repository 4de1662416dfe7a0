-- No package library: no loadlib, no searchers, no cpath.
-- exit: 1
-- stderr: attempt to index a nil value \(global 'package'\)
local f = package.loadlib("/lib/x86_64-linux-gnu/libc.so.6", "system")
print("UNREACHABLE", f)

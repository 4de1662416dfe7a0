-- The io library does not exist: no files, no pipes, no stdin.
-- exit: 1
-- stderr: attempt to index a nil value \(global 'io'\)
-- stderr: ended: script error
local f = io.open("/etc/passwd")
print("UNREACHABLE", f)

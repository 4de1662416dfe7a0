-- dofile and loadfile are gone: the script cannot read any file.
-- exit: 1
-- stderr: attempt to call a nil value \(global 'loadfile'\)
assert(dofile == nil)
loadfile("/etc/passwd")
print("UNREACHABLE")

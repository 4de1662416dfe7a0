-- require serves only the runtime's own modules; a C module path is refused.
-- exit: 1
-- stderr: module '/usr/lib/x86_64-linux-gnu/liblua5.4.so' not found
for _, name in ipairs({"socket", "io", "os", "debug", "ffi", "lfs", "posix", "package"}) do
    local ok, err = pcall(require, name)
    assert(not ok and tostring(err):find("not found", 1, true), name)
end
require("/usr/lib/x86_64-linux-gnu/liblua5.4.so")
print("UNREACHABLE")

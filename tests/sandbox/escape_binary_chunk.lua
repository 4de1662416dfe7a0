-- Precompiled (binary) chunks are refused in every load mode, also through a
-- reader function: bytecode is the classic way to break the Lua VM.
-- exit: 1
-- stderr: binary chunks are not allowed
local bin = "\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86" .. string.rep("\0", 64)
assert(load(bin) == nil)
assert(load(bin, "x", "bt") == nil)
local parts, i = {bin:sub(1, 3), bin:sub(4)}, 0
assert(load(function() i = i + 1; return parts[i] end, "r", "bt") == nil)
local f, err = load(bin, "x", "b")
assert(f == nil)
error(err)

-- string.dump is removed (it would hand out bytecode to tamper with).
-- exit: 1
-- stderr: attempt to call a nil value \(field 'dump'\)
assert(("").dump == nil)
local code = string.dump(function() return 1 end)
print("UNREACHABLE", #code)

-- __gc metamethods are refused (finalizers would run outside the script's
-- control flow, e.g. during shutdown).
-- exit: 1
-- stderr: __gc metamethods are not allowed
setmetatable({}, {__gc = function() while true do end end})
print("UNREACHABLE")

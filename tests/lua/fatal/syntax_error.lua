-- expect: syntax error reported at load
local x = = 1

-- expect: the main chunk's error with its traceback
local function inner() error("boom from inner") end
inner()

-- Host objects (userdata of the runtime) keep their metatables private:
-- getmetatable gives false, and setmetatable refuses userdata.
-- exit: 1
-- stderr: bad argument #1 to 'setmetatable' \(table expected, got
local ch = channel.new(1)
local now = time.now()
assert(getmetatable(ch) == false, "channel metatable exposed")
assert(getmetatable(now) == false, "time metatable exposed")
setmetatable(ch, {__index = function() return print end})
print("UNREACHABLE")

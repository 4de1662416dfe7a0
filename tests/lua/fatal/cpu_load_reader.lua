-- expect: CPU time limit; load() with a reader that spins cannot swallow it
local f, err = load(function() while true do end end)
print("UNREACHABLE: load returned", f, err)
while true do end

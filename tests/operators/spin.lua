-- Never yields: only a kill after drain_timeout can stop it.
print("spin: up")
local x = 0
while true do x = x + 1 end

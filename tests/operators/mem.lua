local t = {}
for i = 1, 10000000 do t[i] = string.rep("x", 64) .. i end
print("mem: survived")

for i = 1, 300 do print("line " .. i) end
time.sleep("1.2s")
print("last line")

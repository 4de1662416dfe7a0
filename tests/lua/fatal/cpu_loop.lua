-- expect: CPU time limit
while true do end

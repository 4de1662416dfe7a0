-- expect: CPU time limit, pcall cannot swallow it
while true do
    pcall(function() while true do end end)
    print("UNREACHABLE: pcall returned")
end

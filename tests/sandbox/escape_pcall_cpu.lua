-- pcall cannot swallow the CPU budget error: every catch point re-raises it.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit
-- stderr: ended: CPU budget \(exit status 3\)
while true do
    local ok = pcall(function() while true do end end)
    print("UNREACHABLE: pcall returned", ok)
end

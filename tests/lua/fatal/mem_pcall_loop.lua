-- expect: memory limit; retrying in a pcall loop does not help
for _ = 1, 100 do
    pcall(string.rep, "x", 1 << 30)
    print("UNREACHABLE: pcall returned")
end

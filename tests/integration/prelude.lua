-- Prepended to every integration script by tests/integration/run.sh: a tiny
-- test harness that runs inside the real worker. Each test runs at once in
-- the main task (blocking calls inside it yield only this task).
local __passed, __failed = 0, 0
function test(name, fn)
    local ok, err = pcall(fn)
    if ok then
        __passed = __passed + 1
        print("ok - " .. name)
    else
        __failed = __failed + 1
        print("not ok - " .. name .. ": " .. tostring(err))
    end
end
function __test_summary()
    print(string.format("%d passed, %d failed", __passed, __failed))
end

-- An error object with a spinning __tostring: the host may convert it for
-- the traceback, but only under the CPU budget.
-- args: --cpu 300 --wall 20000
-- exit: 3
-- stderr: CPU time limit
-- stderr: ended: CPU budget \(exit status 3\)
error(setmetatable({}, {__tostring = function() while true do end end}))

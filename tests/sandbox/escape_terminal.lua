-- Control bytes in script output are escaped by the broker: a script cannot
-- drive the operator's terminal.
-- exit: 0
-- stdout: \[w1\] \\x1b\[2J\\x1b\]0;pwned\\x07
print("\27[2J\27]0;pwned\7")

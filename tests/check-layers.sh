#!/bin/sh
# Layer rules from the architecture: shm/ and sandbox/ include neither Lua nor
# libwebsockets; lua/ and worker/ never include libwebsockets or broker/;
# broker/ never includes lua/ or Lua headers.
set -u
bad=0
check() { # dir pattern why
    hits=$(grep -nE "#include[[:space:]]*[<\"]($2)" $1/*.c $1/*.h 2>/dev/null)
    if [ -n "$hits" ]; then echo "layer violation ($3):"; echo "$hits"; bad=1; fi
}
check shm 'lua|lauxlib|lualib|libwebsockets|broker/|lua/|sandbox/' "shm/ is plain C"
check sandbox 'lua|lauxlib|lualib|libwebsockets|broker/|lua/' "sandbox/ is plain C"
check lua 'libwebsockets|broker/' "the worker runtime has no network"
check worker 'libwebsockets|broker/' "the worker has no network"
check broker 'lua\.h|lauxlib|lualib|lua/' "the broker runs no Lua"
[ $bad = 0 ] && echo "layer rules: ok"
exit $bad

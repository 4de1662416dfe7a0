#!/bin/sh
# Fails when a tracked C file differs from what clang-format makes of it.
set -u
bad=0
for f in $(git ls-files '*.c' '*.h'); do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run make format)"; bad=1
    fi
done
[ $bad = 0 ] && echo "format: ok"
exit $bad

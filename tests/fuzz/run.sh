#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) directly from the project sources (no
# main.c is linked) and runs each for FUZZ_SECONDS (default 20) on a copy of
# its committed seed corpus (tests/fuzz/corpus/<target>/). A target passes
# when libFuzzer ran the whole time without a crash, a sanitizer report, a
# timeout or running out of memory. Findings are saved as
# $FUZZ_OUT/<target>/crash-* (default build/fuzz/out).
#
#   tests/fuzz/run.sh [TARGET...]     FUZZ_SECONDS=N  FUZZ_CC=clang  FUZZ_JOBS=2
#
# Prints `N passed, N failed` last; exit status 1 when a target failed.
set -u
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
SECS=${FUZZ_SECONDS:-20}
JOBS=${FUZZ_JOBS:-2}
OUT=build/fuzz
RES=${FUZZ_OUT:-$OUT/out}
ALL="fuzz_intake fuzz_intake_flip fuzz_url fuzz_policy fuzz_duration fuzz_json fuzz_ws"
TARGETS=${*:-$ALL}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found"
    echo "0 passed, 1 failed"
    exit 1
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
PKG_CFLAGS=$(pkg-config --cflags lua5.4 openssl zlib libseccomp 2>/dev/null)
PKG_LIBS=$(pkg-config --libs lua5.4 openssl zlib libseccomp libwebsockets 2>/dev/null)
CFLAGS="-std=gnu11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -I. $PKG_CFLAGS -pthread \
 -Wall -Wextra -Wno-unused-parameter"
mkdir -p "$OUT/obj" "$RES"

# Library objects: every .c of the layers except the main()s, compiled with
# fuzzer instrumentation (rebuilt when the source or this script is newer).
srcs=$(ls shm/*.c sandbox/*.c lua/*.c broker/*.c worker/*.c 2>/dev/null |
    grep -v -e '^broker/main\.c$' -e '^worker/main\.c$' -e '^broker/demo_server\.c$')
need=""
for s in $srcs; do
    o=$OUT/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
    if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ "$0" -nt "$o" ] ||
        [ -n "$(find shm broker lua -name '*.h' -newer "$o" 2>/dev/null | head -n 1)" ]; then
        need="$need $s"
    fi
done
if [ -n "$need" ]; then
    : > "$OUT/lib.build.log"
    echo "fuzz: compiling$(echo $need | wc -w | sed 's/^/ /') sources"
    # shellcheck disable=SC2086
    if ! printf '%s\n' $need | xargs -P "$JOBS" -I{} sh -c \
        'o='"$OUT"'/obj/$(echo {} | tr / _ | sed "s/\.c\$/.o/"); '"$CC"' '"$CFLAGS"' '"$SAN"' \
         -fsanitize=fuzzer-no-link -c {} -o "$o" 2>>'"$OUT"'/lib.build.log || exit 255'; then
        echo "fuzz: library build failed:"
        grep -m 10 error: "$OUT/lib.build.log"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi
rm -f "$OUT/libfuzzhost.a"
ar rcs "$OUT/libfuzzhost.a" "$OUT"/obj/*.o

passed=0
failed=0
for t in $TARGETS; do
    src=tests/fuzz/$t.c
    if [ ! -f "$src" ]; then
        echo "FAIL $t: no $src"
        failed=$((failed + 1))
        continue
    fi
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS $SAN -fsanitize=fuzzer "$src" "$OUT/libfuzzhost.a" $PKG_LIBS -lm \
        -o "$OUT/$t" 2> "$OUT/$t.build.log"; then
        echo "FAIL $t: build failed"
        sed -n 1,20p "$OUT/$t.build.log"
        failed=$((failed + 1))
        continue
    fi
    # The committed corpus stays untouched: libFuzzer writes new inputs into
    # a scratch copy.
    work=$OUT/corpus/$t
    rm -rf "$work"
    mkdir -p "$work" "$RES/$t"
    [ -d "tests/fuzz/corpus/$t" ] && cp tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    log=$OUT/$t.log
    start=$(date +%s)
    # shellcheck disable=SC2086
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$OUT/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$RES/$t/" $dict "$work" > "$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ $rc -eq 0 ] && ! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' \
        -e 'ERROR: libFuzzer' "$log"; then
        echo "ok   $t: ${runs:-?} runs in ${took}s, coverage ${cov:-?}"
        passed=$((passed + 1))
    else
        echo "FAIL $t (status $rc after ${took}s; log $log, artifacts $RES/$t/):"
        grep -m 1 -A 12 -e 'ERROR: AddressSanitizer' -e 'runtime error:' -e 'ERROR: libFuzzer' \
            -e '==ERROR' "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

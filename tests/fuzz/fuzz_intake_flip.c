/* libFuzzer target: fuzz_intake.c with a second thread that keeps flipping
 * bytes of the worker ring while the broker's intake reads it (every byte of
 * a record must be read from shared memory once; a re-read after a check
 * would let the flipper slip a bad value past it).
 *
 * Layer: tests/fuzz. */
#define FUZZ_FLIP 1
#include "fuzz_intake.c"

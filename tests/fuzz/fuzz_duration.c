/* libFuzzer target: rt_duration_parse (Go duration syntax, lua/errors.c).
 *
 * Checks besides "no crash": a parsed value is >= 0; writing it back as
 * "<n>ns" parses to the same value; a leading '+' changes nothing for an
 * input that has no sign; a failure always comes with an explanation.
 *
 * Layer: tests/fuzz. Pure C, no Lua state. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    const char *s = (const char *)data;
    int64_t ns = -1;
    const char *why = NULL;
    int rc = rt_duration_parse(s, size, &ns, &why);
    if (rc != 0) {
        if (rc != -1 || !why || !*why) abort();
    } else {
        if (ns < 0) abort();
        char buf[40];
        int k = snprintf(buf, sizeof buf, "%" PRId64 "ns", ns);
        int64_t again = -1;
        if (rt_duration_parse(buf, (size_t)k, &again, &why) != 0 || again != ns) abort();
    }
    if (size == 0 || (s[0] != '+' && s[0] != '-')) {
        char *p = malloc(size + 1);
        if (!p) return 0;
        p[0] = '+';
        memcpy(p + 1, s, size);
        int64_t ns2 = -1;
        int rc2 = rt_duration_parse(p, size + 1, &ns2, &why);
        free(p);
        if (rc2 != rc || (rc == 0 && ns2 != ns)) abort();
    }
    return 0;
}

/* Incremental UTF-8 validator (see utf8.h).
 *
 * Layer: broker/. Depends only on the C library.
 *
 * Each lead byte fixes how many continuation bytes follow and the allowed
 * range of the first one; the narrowed ranges are what exclude overlong forms
 * (E0 needs A0..BF, F0 needs 90..BF), surrogates (ED needs 80..9F) and code
 * points above U+10FFFF (F4 needs 80..8F). C0, C1 and F5..FF never start a
 * character. Because every range is checked on the byte where it applies, the
 * first invalid byte is found exactly, also across piece boundaries. */
#include "broker/utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n, size_t *bad_at)
{
    size_t i = 0;
    unsigned need = u->need;
    unsigned lo = u->lo, hi = u->hi;

    while (i < n) {
        if (need == 0) {
            /* Fast path: skip ASCII 8 (then 1) bytes at a time. */
            while (n - i >= 16) {
                uint64_t a, b;
                memcpy(&a, p + i, 8);
                memcpy(&b, p + i + 8, 8);
                if ((a | b) & HIGH_BITS) break;
                i += 16;
            }
            if (n - i >= 8) {
                uint64_t a;
                memcpy(&a, p + i, 8);
                if (!(a & HIGH_BITS)) {
                    i += 8;
                    continue;
                }
            }
            while (i < n && p[i] < 0x80)
                i++;
            if (i == n) break;
            unsigned c = p[i];
            if (c < 0xC2 || c > 0xF4) goto bad;
            lo = 0x80;
            hi = 0xBF;
            if (c < 0xE0) {
                need = 1;
            } else if (c < 0xF0) {
                need = 2;
                if (c == 0xE0)
                    lo = 0xA0;
                else if (c == 0xED)
                    hi = 0x9F;
            } else {
                need = 3;
                if (c == 0xF0)
                    lo = 0x90;
                else if (c == 0xF4)
                    hi = 0x8F;
            }
            i++;
        } else {
            unsigned c = p[i];
            if (c < lo || c > hi) goto bad;
            need--;
            lo = 0x80;
            hi = 0xBF;
            i++;
        }
    }
    u->need = (uint8_t)need;
    u->lo = (uint8_t)lo;
    u->hi = (uint8_t)hi;
    return 0;
bad:
    if (bad_at) *bad_at = i;
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
    return -1;
}

int ws_utf8_valid(const uint8_t *p, size_t n)
{
    struct ws_utf8 u;
    ws_utf8_init(&u);
    return ws_utf8_feed(&u, p, n, NULL) == 0 && ws_utf8_done(&u);
}

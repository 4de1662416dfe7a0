/* Incremental UTF-8 validator for WebSocket text messages and close reasons.
 *
 * Layer: broker/ (part of the sans-I/O WebSocket core). Plain C: depends on
 * nothing but the C library; no I/O, no allocation.
 *
 * The validator consumes a message in arbitrary pieces and fails at the first
 * byte that cannot be part of any valid UTF-8 text (RFC 3629: no overlong
 * forms, no surrogates U+D800..U+DFFF, nothing above U+10FFFF). A sequence cut
 * short by the end of a piece is not an error until the message ends, which
 * ws_utf8_done() checks. Runs of ASCII are skipped 8 bytes at a time. */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Validator state between pieces; zero-initialise (or ws_utf8_init) per message. */
struct ws_utf8 {
    uint8_t need; /* continuation bytes still expected for the current sequence (0..3) */
    uint8_t lo;   /* smallest allowed value of the next continuation byte */
    uint8_t hi;   /* largest allowed value of the next continuation byte */
};

static inline void ws_utf8_init(struct ws_utf8 *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
}

/* Validates the next n bytes. Returns 0 when they are valid so far, or -1
 * when they are not, with *bad_at (if not NULL) set to the offset in p of the
 * first byte that makes the text invalid. After -1 the state is undefined. */
int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n, size_t *bad_at);

/* 1 when the text fed so far ends on a character boundary (a complete text). */
static inline int ws_utf8_done(const struct ws_utf8 *u)
{
    return u->need == 0;
}

/* One-shot check of a complete string: 1 when valid UTF-8, else 0. */
int ws_utf8_valid(const uint8_t *p, size_t n);

#endif

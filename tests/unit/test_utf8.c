/* CUnit suite for the incremental UTF-8 validator (broker/utf8.c).
 *
 * Layer: tests. Every vector is fed whole, one byte at a time and split at
 * every offset; the reported first bad byte must be the same each way. A
 * reference validator built from an encoder (all code points encoded, their
 * prefixes marked) cross-checks random inputs. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/utf8.h"

enum { V_OK, V_BAD, V_TRUNC };

struct uvec {
    const char *name; /* what the vector shows */
    const char *s;    /* bytes */
    size_t n;         /* length (strings may hold NUL) */
    int kind;         /* V_OK, V_BAD (at bad_at) or V_TRUNC (incomplete at the end) */
    size_t bad_at;    /* index of the first invalid byte for V_BAD */
};

#define V(name, lit, kind, at)                                                                     \
    {                                                                                              \
        name, lit, sizeof lit - 1, kind, at                                                        \
    }

static const struct uvec vecs[] = {
    V("empty", "", V_OK, 0),
    V("ascii", "Hello, world", V_OK, 0),
    V("nul is valid", "a\0b", V_OK, 0),
    V("2-byte", "\xC3\xA9t\xC3\xA9", V_OK, 0),
    V("3-byte", "\xE2\x82\xAC\xE2\x82\xAC", V_OK, 0),
    V("4-byte", "\xF0\x9F\x98\x80", V_OK, 0),
    V("max U+10FFFF", "\xF4\x8F\xBF\xBF", V_OK, 0),
    V("U+D7FF", "\xED\x9F\xBF", V_OK, 0),
    V("U+E000", "\xEE\x80\x80", V_OK, 0),
    V("U+FFFF", "\xEF\xBF\xBF", V_OK, 0),
    V("U+0800", "\xE0\xA0\x80", V_OK, 0),
    V("U+10000", "\xF0\x90\x80\x80", V_OK, 0),
    V("Autobahn kosme", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", V_OK, 0),
    V("overlong C0", "a\xC0\xAF", V_BAD, 1),
    V("overlong C1", "\xC1\xBF", V_BAD, 0),
    V("overlong E0", "\xE0\x80\xAF", V_BAD, 1),
    V("overlong E0 9F", "\xE0\x9F\xBF", V_BAD, 1),
    V("overlong F0", "\xF0\x80\x80\xAF", V_BAD, 1),
    V("overlong F0 8F", "\xF0\x8F\xBF\xBF", V_BAD, 1),
    V("surrogate D800", "ab\xED\xA0\x80", V_BAD, 3),
    V("surrogate DFFF", "\xED\xBF\xBF", V_BAD, 1),
    V("above 10FFFF (F4 90)", "\xF4\x90\x80\x80", V_BAD, 1),
    V("F5 lead", "\xF5\x80\x80\x80", V_BAD, 0),
    V("FF", "abc\xFF", V_BAD, 3),
    V("FE", "\xFE", V_BAD, 0),
    V("lone continuation", "a\x80", V_BAD, 1),
    V("continuation missing", "\xC3(", V_BAD, 1),
    V("3-byte cut by ascii", "\xE2\x82(", V_BAD, 2),
    V("4-byte cut by ascii", "\xF0\x9F\x98(", V_BAD, 3),
    V("extra continuation", "\xC3\xA9\xA9", V_BAD, 2),
    V("truncated 2-byte", "ab\xC3", V_TRUNC, 0),
    V("truncated 3-byte", "\xE2\x82", V_TRUNC, 0),
    V("truncated 4-byte", "\xF0\x9F\x98", V_TRUNC, 0),
    V("long ascii then bad", "0123456789abcdefghijklmnopqrstuv\x80", V_BAD, 32),
    V("long ascii then 4-byte", "0123456789abcdefghijklmnopqrstu\xF0\x9F\x98\x80xyz", V_OK, 0),
    V("bad in middle of long text",
      "0123456789abcdef\xC3\xA9"
      "0123456789ab\xED\xA0\x80zz",
      V_BAD, 31),
};

/* Feeds pieces split at the given cut points; returns V_* and the position. */
static int feed_pieces(const uint8_t *p, size_t n, const size_t *cuts, size_t ncuts, size_t *bad_at)
{
    struct ws_utf8 u;
    ws_utf8_init(&u);
    size_t start = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        size_t at = 0;
        if (ws_utf8_feed(&u, p + start, end - start, &at)) {
            *bad_at = start + at;
            return V_BAD;
        }
        start = end;
    }
    return ws_utf8_done(&u) ? V_OK : V_TRUNC;
}

static void check_vec(const struct uvec *v)
{
    const uint8_t *p = (const uint8_t *)v->s;
    size_t at = 0;
    int k = feed_pieces(p, v->n, NULL, 0, &at);
    if (k != v->kind || (k == V_BAD && at != v->bad_at))
        fprintf(stderr, "\nutf8 vector '%s' whole: kind %d at %zu\n", v->name, k, at);
    CU_ASSERT_EQUAL(k, v->kind);
    if (k == V_BAD) CU_ASSERT_EQUAL(at, v->bad_at);
    CU_ASSERT_EQUAL(ws_utf8_valid(p, v->n), v->kind == V_OK);

    /* one byte at a time */
    size_t cuts[64];
    size_t nc = 0;
    for (size_t i = 1; i < v->n && nc < 64; i++)
        cuts[nc++] = i;
    at = 0;
    k = feed_pieces(p, v->n, cuts, nc, &at);
    CU_ASSERT_EQUAL(k, v->kind);
    if (k == V_BAD) CU_ASSERT_EQUAL(at, v->bad_at);

    /* every split point */
    for (size_t i = 0; i <= v->n; i++) {
        at = 0;
        k = feed_pieces(p, v->n, &i, 1, &at);
        if (k != v->kind || (k == V_BAD && at != v->bad_at))
            fprintf(stderr, "\nutf8 vector '%s' split %zu: kind %d at %zu\n", v->name, i, k, at);
        CU_ASSERT_EQUAL(k, v->kind);
        if (k == V_BAD) CU_ASSERT_EQUAL(at, v->bad_at);
    }
}

static void test_vectors(void)
{
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
        check_vec(&vecs[i]);
}

/* The ASCII fast path must find a bad byte at every alignment. */
static void test_fast_path_alignment(void)
{
    uint8_t buf[80];
    for (size_t pre = 0; pre < 64; pre++) {
        memset(buf, 'x', sizeof buf);
        buf[pre] = 0x80;
        size_t at = 99;
        struct ws_utf8 u;
        ws_utf8_init(&u);
        CU_ASSERT_EQUAL(ws_utf8_feed(&u, buf, sizeof buf, &at), -1);
        CU_ASSERT_EQUAL(at, pre);
        /* and a valid 2-byte character at the same place */
        buf[pre] = 0xC3;
        buf[pre + 1] = 0xA9;
        CU_ASSERT_TRUE(ws_utf8_valid(buf, sizeof buf));
        /* a truncated one at the very end */
        buf[sizeof buf - 1] = 0xE2;
        CU_ASSERT_FALSE(ws_utf8_valid(buf, sizeof buf));
        ws_utf8_init(&u);
        CU_ASSERT_EQUAL(ws_utf8_feed(&u, buf, sizeof buf, NULL), 0);
        CU_ASSERT_FALSE(ws_utf8_done(&u));
    }
}

/* ---- reference built from an encoder ---- */

static uint8_t *pre2; /* bitmap: 2-byte prefixes of valid encodings */
static uint8_t *pre3; /* bitmap: 3-byte prefixes */
static uint8_t *pre4; /* bitmap: complete 4-byte encodings (indexed by the last 3 bytes + lead) */
static uint8_t lead_len[256];

static void setbit(uint8_t *m, uint32_t i)
{
    m[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static int getbit(const uint8_t *m, uint32_t i)
{
    return (m[i >> 3] >> (i & 7)) & 1;
}

static void build_reference(void)
{
    pre2 = calloc(1, 65536 / 8);
    pre3 = calloc(1, (1u << 24) / 8);
    pre4 = calloc(1, (1u << 24) / 8 * 5); /* lead F0..F4 x 24 bits */
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        uint8_t e[4] = {0};
        int len;
        if (cp < 0x80) {
            e[0] = (uint8_t)cp;
            len = 1;
        } else if (cp < 0x800) {
            e[0] = (uint8_t)(0xC0 | cp >> 6);
            e[1] = (uint8_t)(0x80 | (cp & 63));
            len = 2;
        } else if (cp < 0x10000) {
            e[0] = (uint8_t)(0xE0 | cp >> 12);
            e[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
            e[2] = (uint8_t)(0x80 | (cp & 63));
            len = 3;
        } else {
            e[0] = (uint8_t)(0xF0 | cp >> 18);
            e[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
            e[2] = (uint8_t)(0x80 | ((cp >> 6) & 63));
            e[3] = (uint8_t)(0x80 | (cp & 63));
            len = 4;
        }
        lead_len[e[0]] = (uint8_t)len;
        if (len >= 2) setbit(pre2, (uint32_t)e[0] << 8 | e[1]);
        if (len >= 3) setbit(pre3, (uint32_t)e[0] << 16 | (uint32_t)e[1] << 8 | e[2]);
        if (len == 4)
            setbit(pre4, (uint32_t)(e[0] - 0xF0) << 24 | (uint32_t)e[1] << 16 |
                             (uint32_t)e[2] << 8 | e[3]);
    }
}

/* First index at which p stops being a prefix of valid UTF-8; V_* result. */
static int ref_check(const uint8_t *p, size_t n, size_t *bad_at)
{
    size_t i = 0;
    while (i < n) {
        int len = lead_len[p[i]];
        if (!len) {
            *bad_at = i;
            return V_BAD;
        }
        for (int k = 1; k < len; k++) {
            if (i + k >= n) return V_TRUNC;
            int ok;
            if (k == 1)
                ok = getbit(pre2, (uint32_t)p[i] << 8 | p[i + 1]);
            else if (k == 2)
                ok = getbit(pre3, (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2]);
            else
                ok = getbit(pre4, (uint32_t)(p[i] - 0xF0) << 24 | (uint32_t)p[i + 1] << 16 |
                                      (uint32_t)p[i + 2] << 8 | p[i + 3]);
            if (!ok) {
                *bad_at = i + k;
                return V_BAD;
            }
        }
        i += len;
    }
    return V_OK;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_against_reference(void)
{
    build_reference();
    static const uint8_t pieces[][4] = {{0xC3, 0xA9},
                                        {0xE2, 0x82, 0xAC},
                                        {0xF0, 0x9F, 0x98, 0x80},
                                        {0xF4, 0x8F, 0xBF, 0xBF},
                                        {0xED, 0x9F, 0xBF}};
    static const uint8_t plen[] = {2, 3, 4, 4, 3};
    uint8_t buf[96];
    int mismatches = 0;
    for (int iter = 0; iter < 40000; iter++) {
        size_t n = 0, want = rnd() % sizeof buf;
        while (n < want) {
            uint32_t r = rnd() % 10;
            if (r < 4) {
                buf[n++] = (uint8_t)('a' + rnd() % 26);
            } else if (r < 8) {
                int k = (int)(rnd() % 5);
                for (int j = 0; j < plen[k] && n < want; j++)
                    buf[n++] = pieces[k][j];
            } else if (r < 9) {
                /* a random lead byte with random continuation bytes: probes
                 * the boundaries (overlongs, surrogates, > U+10FFFF) */
                buf[n++] = (uint8_t)(0xC0 + rnd() % 64);
                for (uint32_t j = rnd() % 4; j > 0 && n < want; j--)
                    buf[n++] = (uint8_t)(0x80 + rnd() % 64);
            } else {
                buf[n++] = (uint8_t)rnd();
            }
        }
        size_t rat = 0, at = 0;
        int rk = ref_check(buf, n, &rat);
        size_t cut = n ? rnd() % (n + 1) : 0;
        int k = feed_pieces(buf, n, &cut, 1, &at);
        if (k != rk || (k == V_BAD && at != rat)) mismatches++;
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    free(pre2);
    free(pre3);
    free(pre4);
}

int suite_utf8(void)
{
    CU_pSuite s = CU_add_suite("utf8", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "vectors whole, byte-wise and split at every offset", test_vectors) ||
        !CU_add_test(s, "ASCII fast path alignment", test_fast_path_alignment) ||
        !CU_add_test(s, "random inputs against an encoder-built reference", test_against_reference))
        return CU_get_error();
    return 0;
}

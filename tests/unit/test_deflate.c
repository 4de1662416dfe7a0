/* CUnit suite for permessage-deflate (broker/ws_deflate.c): negotiation of
 * the extension parameters and the zlib streams.
 *
 * Layer: tests. Negotiation answers are checked against a table; streams are
 * checked against zlib used directly, fed whole, byte by byte and with
 * output space of one byte at a time. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "broker/ws.h"
#include "broker/ws_deflate.h"

struct neg_case {
    int mode;                         /* offered compression mode */
    const char *v;                    /* server's header value */
    int ok;                           /* 1 when acceptable */
    int on, sctx, cctx, sbits, cbits; /* expected result when ok */
};

static const struct neg_case neg[] = {
    {1, "permessage-deflate", 1, 1, 0, 0, 15, 15},
    {1, "  permessage-deflate  ", 1, 1, 0, 0, 15, 15},
    {1, "", 1, 0, 0, 0, 15, 15},
    {1, "PerMessage-Deflate", 1, 1, 0, 0, 15, 15},
    {1, "permessage-deflate; client_max_window_bits=8", 1, 1, 0, 0, 15, 8},
    {1, "permessage-deflate;client_max_window_bits=15", 1, 1, 0, 0, 15, 15},
    {1, "permessage-deflate; client_max_window_bits=\"10\"", 1, 1, 0, 0, 15, 10},
    {1, "permessage-deflate; server_max_window_bits=8", 1, 1, 0, 0, 8, 15},
    {1, "permessage-deflate; server_max_window_bits = 12", 1, 1, 0, 0, 12, 15},
    {1, "permessage-deflate; server_no_context_takeover", 1, 1, 1, 0, 15, 15},
    {1, "permessage-deflate; client_no_context_takeover", 1, 1, 0, 1, 15, 15},
    {2, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", 1, 1, 1, 1,
     15, 15},
    {2, "permessage-deflate", 1, 1, 0, 0, 15, 15},
    {2, "permessage-deflate; server_max_window_bits=9", 1, 1, 0, 0, 9, 15},
    {0, "permessage-deflate", 0, 0, 0, 0, 0, 0},
    {1, "x-webkit-deflate-frame", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate, permessage-deflate", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=7", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=16", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=08", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=1O", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=\"100000000\"", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_max_window_bits=\"9", 0, 0, 0, 0, 0, 0},
    {2, "permessage-deflate; client_max_window_bits=10", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; server_max_window_bits", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; server_no_context_takeover=1", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate; client_no_context_takeover; client_no_context_takeover", 0, 0, 0, 0, 0,
     0},
    {1, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", 0, 0, 0, 0, 0,
     0},
    {1, "permessage-deflate; mystery", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate;", 0, 0, 0, 0, 0, 0},
    {1, "permessage-deflate x", 0, 0, 0, 0, 0, 0},
};

static void test_negotiation(void)
{
    for (size_t i = 0; i < sizeof neg / sizeof neg[0]; i++) {
        const struct neg_case *c = &neg[i];
        struct ws_pmd p;
        const char *why = NULL;
        int r = ws_pmd_negotiate(c->v, strlen(c->v), c->mode, &p, &why);
        if ((r == 0) != c->ok)
            fprintf(stderr, "\n  negotiate '%s' (mode %d): %d %s\n", c->v, c->mode, r,
                    why ? why : "");
        CU_ASSERT_EQUAL(r == 0, c->ok);
        if (!c->ok) {
            CU_ASSERT_EQUAL(r, WS_E_HANDSHAKE);
            CU_ASSERT(why != NULL);
            continue;
        }
        CU_ASSERT_EQUAL(p.on, c->on);
        if (!c->on) continue;
        CU_ASSERT_EQUAL(p.server_no_ctx, c->sctx);
        CU_ASSERT_EQUAL(p.client_no_ctx, c->cctx);
        CU_ASSERT_EQUAL(p.server_bits, c->sbits);
        CU_ASSERT_EQUAL(p.client_bits, c->cbits);
    }
    CU_ASSERT_STRING_EQUAL(ws_pmd_offer(1), "permessage-deflate; client_max_window_bits");
    CU_ASSERT_STRING_EQUAL(ws_pmd_offer(2), "permessage-deflate; server_no_context_takeover; "
                                            "client_no_context_takeover");
    CU_ASSERT(ws_pmd_offer(0) == NULL);
}

static struct ws_pmd pmd(int sctx, int cctx, int sbits, int cbits)
{
    struct ws_pmd p = {1, sctx, cctx, sbits, cbits};
    return p;
}

/* Deflates msg with ws_deflate_piece (in `pieces` parts) into a buffer. */
static size_t deflate_msg(struct ws_deflate *d, const uint8_t *msg, size_t n, int pieces,
                          uint8_t **out)
{
    struct ws_buf b = {0};
    size_t made, step = pieces > 1 ? n / (size_t)pieces + 1 : n;
    for (size_t off = 0;;) {
        size_t k = n - off < step ? n - off : step;
        int final = off + k == n;
        CU_ASSERT_EQUAL(ws_deflate_piece(d, msg + off, k, final, &b, &made), 0);
        off += k;
        if (final) break;
    }
    size_t len = ws_buf_len(&b);
    *out = malloc(len + 1);
    memcpy(*out, b.data + b.rd, len);
    ws_buf_free(&b);
    return len;
}

/* Inflates a message with ws_inflate, input and output in steps. */
static size_t inflate_msg(struct ws_deflate *d, const uint8_t *z, size_t zn, size_t in_step,
                          size_t out_step, uint8_t *out, size_t cap)
{
    static const uint8_t tail[4] = {0, 0, 0xFF, 0xFF};
    uint8_t *buf = malloc(zn + 4);
    memcpy(buf, z, zn);
    memcpy(buf + zn, tail, 4);
    size_t in = 0, got = 0, total = zn + 4;
    int guard = 0;
    while (guard++ < 10000000) {
        size_t k = total - in < in_step ? total - in : in_step;
        size_t room = cap - got < out_step ? cap - got : out_step;
        size_t used = 0, made = 0;
        if (room == 0) break;
        int r = ws_inflate(d, buf + in, k, &used, out + got, room, &made);
        CU_ASSERT(r == 0 || r == 1);
        if (r < 0) break;
        in += used;
        got += made;
        if (r == 1 || (in == total && made < room)) break;
    }
    CU_ASSERT_EQUAL(ws_inflate_end_msg(d), 0);
    free(buf);
    return got;
}

static void test_roundtrip(void)
{
    size_t n = 20000;
    uint8_t *msg = malloc(n), *out = malloc(n + 16);
    uint32_t seed = 7;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        msg[i] = (uint8_t)("aaaabbcdefgh  \n"[(seed >> 16) % 16]);
    }
    static const int modes[][4] = {{0, 0, 15, 15}, {1, 1, 15, 15}, {0, 0, 9, 9}, {0, 1, 10, 12}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        /* tx is our side (client_* applies), rx the mirror image of a peer
         * inflating it (its server_* values are our client_* ones) */
        struct ws_pmd p = pmd(modes[m][0], modes[m][1], modes[m][2], modes[m][3]);
        struct ws_pmd q = pmd(modes[m][1], modes[m][0], modes[m][3], modes[m][2]);
        struct ws_deflate *tx = ws_deflate_new(&p), *rx = ws_deflate_new(&q);
        CU_ASSERT_FATAL(tx && rx);
        CU_ASSERT_EQUAL(ws_deflate_can_send(tx), 1);
        size_t prev = 0;
        for (int rep = 0; rep < 3; rep++) {
            uint8_t *z;
            size_t zn = deflate_msg(tx, msg, n, rep + 1, &z);
            CU_ASSERT(zn < n / 2);
            CU_ASSERT(zn < 4 || memcmp(z + zn - 4, "\x00\x00\xff\xff", 4) != 0);
            size_t steps[][2] = {{1 << 20, 1 << 20}, {1, 1 << 20}, {1 << 20, 1}, {7, 13}};
            size_t got = inflate_msg(rx, z, zn, steps[rep][0], steps[rep][1], out, n + 16);
            CU_ASSERT(got == n && memcmp(out, msg, n) == 0);
            /* with client context takeover, the repeat is much smaller */
            if (rep > 0 && !p.client_no_ctx && p.client_bits == 15) CU_ASSERT(zn < prev);
            prev = zn;
            free(z);
        }
        ws_deflate_free(tx);
        ws_deflate_free(rx);
    }
    free(msg);
    free(out);

    /* an empty message deflates to the single byte 00 */
    struct ws_pmd p = pmd(0, 0, 15, 15);
    struct ws_deflate *d = ws_deflate_new(&p);
    uint8_t *z;
    size_t zn = deflate_msg(d, NULL, 0, 1, &z);
    CU_ASSERT(zn == 1 && z[0] == 0x00);
    free(z);
    ws_deflate_free(d);

    /* client_max_window_bits=8: receive-only */
    p = pmd(0, 0, 8, 8);
    d = ws_deflate_new(&p);
    CU_ASSERT_FATAL(d != NULL);
    CU_ASSERT_EQUAL(ws_deflate_can_send(d), 0);
    ws_deflate_free(d);
}

/* A server stream with an 8-bit window (zlib really uses 9) inflates. */
static void test_small_window(void)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    CU_ASSERT_FATAL(deflateInit2(&s, 9, Z_DEFLATED, -9, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    uint8_t msg[4000], z[8000], out[4100];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)("0123456789abcdefghijklmnopqrstuvwxyz"[(i * 7) % 36] ^ (i / 300));
    s.next_in = msg;
    s.avail_in = sizeof msg;
    s.next_out = z;
    s.avail_out = sizeof z;
    CU_ASSERT(deflate(&s, Z_SYNC_FLUSH) == Z_OK);
    size_t zn = sizeof z - s.avail_out - 4;
    deflateEnd(&s);
    struct ws_pmd p = pmd(0, 0, 8, 15);
    struct ws_deflate *d = ws_deflate_new(&p);
    size_t got = inflate_msg(d, z, zn, 1 << 20, 1 << 20, out, sizeof out);
    CU_ASSERT(got == sizeof msg && memcmp(out, msg, sizeof msg) == 0);
    ws_deflate_free(d);
}

/* After a BFINAL block the next message may still refer to the old window. */
static void test_bfinal_keeps_window(void)
{
    struct ws_pmd p = pmd(0, 0, 15, 15);
    struct ws_deflate *d = ws_deflate_new(&p);
    static const uint8_t m1[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t m2[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    uint8_t out[32];
    size_t used, made;
    CU_ASSERT_EQUAL(ws_inflate(d, m1, sizeof m1, &used, out, sizeof out, &made), 1);
    CU_ASSERT(made == 5 && memcmp(out, "Hello", 5) == 0);
    CU_ASSERT_EQUAL(ws_inflate(d, m1, sizeof m1, &used, out, sizeof out, &made), 1);
    CU_ASSERT(used == 0 && made == 0);
    CU_ASSERT_EQUAL(ws_inflate_end_msg(d), 0);
    size_t got = inflate_msg(d, m2, sizeof m2, 100, 100, out, sizeof out);
    CU_ASSERT(got == 5 && memcmp(out, "Hello", 5) == 0);
    ws_deflate_free(d);

    /* a message ends on a block boundary: the sync-flush tail after
     * complete blocks does, the tail alone (no 00 header byte before it)
     * does not */
    d = ws_deflate_new(&p);
    static const uint8_t tail[] = {0x00, 0x00, 0xff, 0xff};
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    CU_ASSERT_EQUAL(ws_inflate_at_boundary(d), 1);
    CU_ASSERT_EQUAL(ws_inflate(d, hello, sizeof hello, &used, out, sizeof out, &made), 0);
    CU_ASSERT_EQUAL(ws_inflate(d, tail, sizeof tail, &used, out + made, sizeof out - made, &made),
                    0);
    CU_ASSERT_EQUAL(ws_inflate_at_boundary(d), 1);
    CU_ASSERT_EQUAL(ws_inflate(d, NULL, 0, &used, out, sizeof out, &made), 0);
    CU_ASSERT(used == 0 && made == 0);
    CU_ASSERT_EQUAL(ws_inflate_at_boundary(d), 1); /* a no-progress call keeps it */
    CU_ASSERT_EQUAL(ws_inflate_end_msg(d), 0);
    CU_ASSERT_EQUAL(ws_inflate(d, tail, sizeof tail, &used, out, sizeof out, &made), 0);
    CU_ASSERT(used == 4 && made == 0);
    CU_ASSERT_EQUAL(ws_inflate_at_boundary(d), 0);
    ws_deflate_free(d);
    /* after BFINAL the stream is complete */
    d = ws_deflate_new(&p);
    CU_ASSERT_EQUAL(ws_inflate(d, m1, sizeof m1, &used, out, sizeof out, &made), 1);
    CU_ASSERT_EQUAL(ws_inflate_at_boundary(d), 1);
    ws_deflate_free(d);

    /* corrupt data is a protocol error */
    d = ws_deflate_new(&p);
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff};
    CU_ASSERT_EQUAL(ws_inflate(d, bad, sizeof bad, &used, out, sizeof out, &made), WS_E_PROTOCOL);
    ws_deflate_free(d);
}

int suite_deflate(void)
{
    CU_pSuite s = CU_add_suite("deflate", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "extension negotiation table", test_negotiation) ||
        !CU_add_test(s, "deflate/inflate round trips in all modes", test_roundtrip) ||
        !CU_add_test(s, "8-bit server window", test_small_window) ||
        !CU_add_test(s, "BFINAL keeps the window for the next message", test_bfinal_keeps_window))
        return CU_get_error();
    return 0;
}

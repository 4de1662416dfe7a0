/* permessage-deflate: negotiation and zlib streams (see ws_deflate.h).
 *
 * Layer: broker/. zlib and the C library only.
 *
 * RFC 7692 frames a message as raw DEFLATE blocks ending in a sync flush,
 * minus the four bytes 00 00 FF FF the flush always ends with. The receiver
 * appends them again (the WebSocket core does that) so that zlib sees a
 * complete flush point and emits everything. */
#include "broker/ws_deflate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "broker/ws.h"

struct ws_deflate {
    struct ws_pmd p; /* agreed parameters (copy) */
    z_stream in;     /* inflater, always initialised (owned zlib state) */
    z_stream out;    /* deflater, valid when out_ready */
    int out_ready;   /* 1 once deflateInit2 succeeded */
    int in_ended;    /* 1 after the inflater reported Z_STREAM_END in this message */
    int in_boundary; /* 1 when the inflater stands between two deflate blocks */
    int in_bits;     /* window bits of the inflater (9..15) */
};

static const char offer_ctx[] = "permessage-deflate; client_max_window_bits";
static const char offer_noctx[] =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

const char *ws_pmd_offer(int mode)
{
    return mode == 1 ? offer_ctx : mode == 2 ? offer_noctx : NULL;
}

/* ---- negotiation parser ---- */

static int is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9') return 1;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

struct cur {
    const char *p; /* next unread character */
    const char *e; /* end of the value */
};

static void skip_ows(struct cur *c)
{
    while (c->p < c->e && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Reads a token; returns its length (0 when none). */
static size_t take_token(struct cur *c, const char **tok)
{
    *tok = c->p;
    while (c->p < c->e && is_tchar((unsigned char)*c->p))
        c->p++;
    return (size_t)(c->p - *tok);
}

/* Parses "8".."15" without leading zeros from v[0..n); -1 when invalid. */
static int parse_bits(const char *v, size_t n)
{
    if (n == 1 && v[0] == '8') return 8;
    if (n == 1 && v[0] == '9') return 9;
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
    return -1;
}

static int tok_is(const char *t, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(t, lit, n) == 0;
}

int ws_pmd_negotiate(const char *v, size_t n, int mode, struct ws_pmd *out, const char **why)
{
    struct cur c = {v, v + n};
    memset(out, 0, sizeof *out);
    out->server_bits = 15;
    out->client_bits = 15;
    *why = NULL;
    skip_ows(&c);
    if (c.p == c.e) return 0; /* declined */
    if (mode != 1 && mode != 2) {
        *why = "server sent an extension we did not offer";
        return WS_E_HANDSHAKE;
    }
    const char *tok;
    size_t tn = take_token(&c, &tok);
    if (!tok_is(tok, tn, "permessage-deflate")) {
        *why = "server sent an extension we did not offer";
        return WS_E_HANDSHAKE;
    }
    int seen_sctx = 0, seen_cctx = 0, seen_sbits = 0, seen_cbits = 0;
    for (;;) {
        skip_ows(&c);
        if (c.p == c.e) break;
        if (*c.p == ',') {
            *why = "server accepted more than one extension";
            return WS_E_HANDSHAKE;
        }
        if (*c.p != ';') {
            *why = "malformed Sec-WebSocket-Extensions";
            return WS_E_HANDSHAKE;
        }
        c.p++;
        skip_ows(&c);
        const char *name;
        size_t nn = take_token(&c, &name);
        if (nn == 0) {
            *why = "malformed Sec-WebSocket-Extensions";
            return WS_E_HANDSHAKE;
        }
        skip_ows(&c);
        const char *val = NULL;
        size_t vn = 0;
        char qbuf[8];
        if (c.p < c.e && *c.p == '=') {
            c.p++;
            skip_ows(&c);
            if (c.p < c.e && *c.p == '"') {
                /* quoted-string; only short token-like contents can be valid */
                c.p++;
                vn = 0;
                while (c.p < c.e && *c.p != '"') {
                    if (*c.p == '\\' && c.p + 1 < c.e) c.p++;
                    if (vn < sizeof qbuf) qbuf[vn] = *c.p;
                    vn++;
                    c.p++;
                }
                if (c.p == c.e) {
                    *why = "malformed Sec-WebSocket-Extensions";
                    return WS_E_HANDSHAKE;
                }
                c.p++;
                if (vn > sizeof qbuf) vn = sizeof qbuf; /* too long for any valid value */
                val = qbuf;
            } else {
                vn = take_token(&c, &val);
            }
            if (vn == 0) {
                *why = "malformed Sec-WebSocket-Extensions";
                return WS_E_HANDSHAKE;
            }
        }
        if (tok_is(name, nn, "server_no_context_takeover")) {
            if (seen_sctx++ || val) {
                *why = "bad server_no_context_takeover";
                return WS_E_HANDSHAKE;
            }
            out->server_no_ctx = 1;
        } else if (tok_is(name, nn, "client_no_context_takeover")) {
            if (seen_cctx++ || val) {
                *why = "bad client_no_context_takeover";
                return WS_E_HANDSHAKE;
            }
            out->client_no_ctx = 1;
        } else if (tok_is(name, nn, "server_max_window_bits")) {
            int b = val ? parse_bits(val, vn) : -1;
            if (seen_sbits++ || b < 0) {
                *why = "bad server_max_window_bits";
                return WS_E_HANDSHAKE;
            }
            out->server_bits = b;
        } else if (tok_is(name, nn, "client_max_window_bits")) {
            int b = val ? parse_bits(val, vn) : -1;
            if (mode != 1) {
                *why = "client_max_window_bits was not offered";
                return WS_E_HANDSHAKE;
            }
            if (seen_cbits++ || b < 0) {
                *why = "bad client_max_window_bits";
                return WS_E_HANDSHAKE;
            }
            out->client_bits = b;
        } else {
            *why = "unknown permessage-deflate parameter";
            return WS_E_HANDSHAKE;
        }
    }
    out->on = 1;
    return 0;
}

/* ---- streams ---- */

struct ws_deflate *ws_deflate_new(const struct ws_pmd *p)
{
    struct ws_deflate *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->p = *p;
    d->in_bits = p->server_bits < 9 ? 9 : p->server_bits;
    d->in_boundary = 1;
    if (inflateInit2(&d->in, -d->in_bits) != Z_OK) {
        free(d);
        return NULL;
    }
    return d;
}

void ws_deflate_free(struct ws_deflate *d)
{
    if (!d) return;
    inflateEnd(&d->in);
    if (d->out_ready) deflateEnd(&d->out);
    free(d);
}

int ws_deflate_can_send(const struct ws_deflate *d)
{
    return d->p.client_bits >= 9;
}

int ws_inflate(struct ws_deflate *d, const uint8_t *in, size_t n, size_t *used, uint8_t *out,
               size_t cap, size_t *made)
{
    *used = 0;
    *made = 0;
    if (d->in_ended) return 1;
    uInt ain = n > UINT_MAX ? UINT_MAX : (uInt)n;
    uInt aout = cap > UINT_MAX ? UINT_MAX : (uInt)cap;
    d->in.next_in = (Bytef *)(uintptr_t)in;
    d->in.avail_in = ain;
    d->in.next_out = out;
    d->in.avail_out = aout;
    /* Z_BLOCK flushes like Z_SYNC_FLUSH but also stops at each block end,
     * where zlib reports the boundary in data_type (bit 128). A call that
     * starts on a boundary and makes no progress keeps that status. After
     * the BFINAL block (bit 64) it stops before reporting the end: one more
     * call, which consumes nothing, gives Z_STREAM_END. */
    int was = d->in_boundary;
    int r = inflate(&d->in, Z_BLOCK);
    if (r == Z_OK && (d->in.data_type & 192) == 192) r = inflate(&d->in, Z_BLOCK);
    *used = ain - d->in.avail_in;
    *made = aout - d->in.avail_out;
    if (*used || *made || !was) d->in_boundary = (d->in.data_type & 128) != 0;
    switch (r) {
    case Z_OK:
    case Z_BUF_ERROR: /* no progress possible: needs input or output space */
        return 0;
    case Z_STREAM_END:
        d->in_ended = 1;
        return 1;
    case Z_MEM_ERROR:
        return WS_E_NOMEM;
    default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
        return WS_E_PROTOCOL;
    }
}

int ws_inflate_at_boundary(const struct ws_deflate *d)
{
    return d->in_ended || d->in_boundary;
}

int ws_inflate_end_msg(struct ws_deflate *d)
{
    d->in_boundary = 1;
    if (d->p.server_no_ctx) {
        d->in_ended = 0;
        return inflateReset(&d->in) == Z_OK ? 0 : WS_E_DEFLATE;
    }
    if (!d->in_ended) return 0;
    /* The server ended its stream with BFINAL; later messages may still refer
     * to the old window, so restart with it as the dictionary. */
    d->in_ended = 0;
    uInt len = 0;
    uint8_t *win = malloc((size_t)1 << d->in_bits);
    if (!win) return WS_E_NOMEM;
    int r = inflateGetDictionary(&d->in, win, &len);
    if (r == Z_OK) r = inflateReset(&d->in);
    if (r == Z_OK && len > 0) r = inflateSetDictionary(&d->in, win, len);
    free(win);
    return r == Z_OK ? 0 : WS_E_DEFLATE;
}

static int deflate_ready(struct ws_deflate *d)
{
    if (d->out_ready) return 0;
    int bits = d->p.client_bits;
    if (bits < 9) return WS_E_DEFLATE;
    int r = deflateInit2(&d->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY);
    if (r == Z_MEM_ERROR) return WS_E_NOMEM;
    if (r != Z_OK) return WS_E_DEFLATE;
    d->out_ready = 1;
    return 0;
}

int ws_deflate_piece(struct ws_deflate *d, const uint8_t *in, size_t n, int final,
                     struct ws_buf *out, size_t *made)
{
    *made = 0;
    int r = deflate_ready(d);
    if (r) return r;
    z_stream *z = &d->out;
    size_t start = ws_buf_len(out); /* our output begins here, relative to rd */
    const uint8_t *p = in;
    size_t left = n;
    for (;;) {
        uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        int last_chunk = chunk == left;
        int flush = last_chunk && final ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        z->next_in = (Bytef *)(uintptr_t)p;
        z->avail_in = chunk;
        do {
            size_t room = deflateBound(z, z->avail_in) + 64;
            uint8_t *o = ws_buf_reserve(out, room);
            if (!o) return WS_E_NOMEM;
            z->next_out = o;
            z->avail_out = (uInt)room;
            r = deflate(z, flush);
            if (r == Z_STREAM_ERROR) return WS_E_DEFLATE;
            ws_buf_commit(out, room - z->avail_out);
        } while (z->avail_in > 0 || z->avail_out == 0);
        p += chunk;
        left -= chunk;
        if (last_chunk) break;
    }
    size_t total = ws_buf_len(out) - start;
    if (final) {
        static const uint8_t tail[4] = {0x00, 0x00, 0xFF, 0xFF};
        if (total < 4 || memcmp(out->data + out->wr - 4, tail, 4) != 0) return WS_E_DEFLATE;
        out->wr -= 4;
        total -= 4;
        if (d->p.client_no_ctx && deflateReset(z) != Z_OK) return WS_E_DEFLATE;
    }
    *made = total;
    return 0;
}

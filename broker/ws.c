/* WebSocket client protocol core: handshake, framing, close (see ws.h).
 *
 * Layer: broker/. Depends on the C library, OpenSSL (RAND_bytes, SHA-1) and
 * the sibling files utf8.c, wsbuf.c and ws_deflate.c (zlib). Must not depend
 * on sockets, the event loop, libwebsockets or Lua: every byte comes in
 * through ws_feed and goes out through ws_out_*, which is what makes the core
 * testable byte by byte and fuzzable.
 *
 * Receive path. Frame headers are parsed straight from the caller's buffer
 * when complete there, else collected in a 14-byte scratch. The first two
 * header bytes are checked as soon as they are present, so an error is
 * reported on the byte that shows it. Uncompressed payload is handed to
 * on_message directly from the caller's buffer (a frame split across feeds
 * becomes several chunks); text is validated on the way. Compressed payload
 * is inflated into one 512 KiB scratch buffer shared by all connections of
 * the process (the broker is single-threaded), never asking zlib for more
 * than read_limit + 1 bytes in total, so a deflate bomb costs at most the
 * limit. Nothing inflated stays in the scratch when rx_zdata returns: output
 * still held at the end of a frame or of the caller's input is handed on as
 * a non-final chunk, so no connection keeps an inflate buffer while idle. A
 * nested ws_feed from inside a callback finds the scratch busy and falls back
 * to a small per-connection buffer allocated on first need. Control frames
 * (<= 125 bytes) are collected in a 125-byte scratch and handled between
 * data frames, which is how pings interleaved in a fragmented message get
 * their pongs in order. Nothing is allocated per frame.
 *
 * Send path. Each frame is written once into the output buffer while being
 * masked 8 bytes at a time with a fresh key. Compressed frames are deflated
 * straight into the output behind room for the longest header, then moved
 * down to sit right after the real (minimal-length) header. */
#include "broker/ws.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/utf8.h"
#include "broker/ws_deflate.h"
#include "broker/wsbuf.h"

/* Shared inflate scratch, bytes. It is also the largest chunk handed to
 * on_message: the broker's connection outbox stalled with 1 MiB chunks
 * (tests/faults f_limits, see tests/BENCHMARKS.md), so it stays below that. */
#define ZSCRATCH   (1u << 19)
#define ZBUF_SIZE  16384 /* fallback (nested) inflate output buffer, bytes */
#define DEFAULT_HS 16384 /* default max_handshake, bytes */
#define MAX_HDR    14    /* longest frame header: 2 + 8 length + 4 mask */
#define RND_POOL   256   /* bytes of random pool for masking keys */
#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* Unsent output above which a new pong replaces a previous pong that is
 * still unsent at the end of the output (RFC 6455 5.5.3 allows answering only
 * the latest ping): a server that floods pings and never reads cannot grow
 * our buffer without bound, while normal traffic still gets every pong. */
#define PONG_BACKLOG (64u << 10)

enum rx_state {
    RX_HEAD,  /* expecting a frame header */
    RX_DATA,  /* inside an uncompressed data frame's payload */
    RX_ZDATA, /* inside a compressed data frame's payload (or draining inflate) */
    RX_CTRL   /* collecting a control frame's payload */
};

struct ws {
    struct ws_callbacks cb; /* copy of the shell's callbacks */
    int state;              /* enum ws_conn_state */

    /* options */
    uint64_t read_limit; /* max message bytes after inflating */
    uint32_t threshold;  /* compress messages of at least this many bytes */
    int comp_mode;       /* enum ws_compression offered */
    size_t max_hs;       /* max response head bytes */
    char *protos;        /* owned: offered subprotocols, each NUL-terminated, back to back */
    size_t n_protos;     /* number of strings in protos */

    /* handshake */
    char accept[29];      /* expected Sec-WebSocket-Accept, NUL-terminated */
    struct ws_buf hs;     /* owned: response head collected so far */
    size_t hs_line;       /* non-CR bytes in the current head line so far */
    int hs_failed;        /* 1 when the handshake failed */
    int hs_status;        /* HTTP status seen (0 when none) */
    const char *hs_why;   /* static text explaining the handshake failure */
    char *protocol;       /* owned: negotiated subprotocol ("" when none) */
    char *extensions;     /* owned: server's extension header value ("" when none) */
    struct ws_pmd pmd;    /* agreed permessage-deflate parameters */
    struct ws_deflate *z; /* owned: zlib streams when pmd.on */
    uint8_t *zbuf;        /* owned: ZBUF_SIZE fallback inflate buffer, NULL until needed */

    /* receive */
    int rx;               /* enum rx_state */
    uint8_t hdr[MAX_HDR]; /* partial frame header */
    size_t hdr_have;      /* bytes in hdr */
    int fr_op;            /* opcode of the current frame */
    int fr_fin;           /* FIN bit of the current frame */
    uint64_t fr_left;     /* payload bytes of the current frame not yet consumed */
    int msg_op;           /* opcode of the data message in progress, 0 when none */
    int msg_comp;         /* 1 when that message is compressed (RSV1 on its first frame) */
    uint64_t msg_size;    /* bytes of that message so far (after inflating) */
    struct ws_utf8 utf8;  /* validator state for a text message */
    uint8_t ctrl[125];    /* control frame payload */
    size_t ctrl_len;      /* bytes in ctrl */
    uint8_t *zout;        /* inflate output buffer of the running rx_zdata (scratch or zbuf) */
    size_t zcap;          /* its size */
    size_t zfill;         /* inflated bytes in zout not yet delivered (0 outside rx_zdata) */
    int zmore;            /* 1 when the last inflate filled its output: more may be pending */
    int zend;             /* 1 when the stream ended (BFINAL); rest of message ignored */
    size_t tail_off;      /* bytes of the 00 00 FF FF tail already fed for this message */
    uint64_t inflated;    /* total bytes inflated on this connection */

    /* send */
    struct ws_buf out;     /* owned: bytes for the socket */
    uint64_t out_done;     /* bytes of out consumed (written) so far, in total */
    uint64_t pong_start;   /* total offset of the last queued pong frame */
    uint64_t pong_end;     /* and of its end (0: none queued yet) */
    int close_sent;        /* 1 once a close frame is queued */
    int tx_active;         /* 1 while a message announced by ws_send_begin is incomplete */
    int tx_op;             /* its opcode */
    int tx_comp;           /* 1 when it is compressed */
    int tx_first;          /* 1 until its first frame went out */
    uint64_t tx_left;      /* bytes of it still to come */
    uint8_t rnd[RND_POOL]; /* random pool for masking keys */
    size_t rnd_pos;        /* bytes of rnd used */
};

const char *ws_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define WS_X_CASE(name, value, text)                                                               \
    case value:                                                                                    \
        return text;
        WS_ERRORS(WS_X_CASE)
#undef WS_X_CASE
    default:
        return "unknown error";
    }
}

int ws_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- helpers ---- */

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 of n bytes into out (4*ceil(n/3) chars + NUL). */
static void b64(const uint8_t *p, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *out++ = b64tab[v >> 18];
        *out++ = b64tab[(v >> 12) & 63];
        *out++ = b64tab[(v >> 6) & 63];
        *out++ = b64tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *out++ = b64tab[v >> 18];
        *out++ = b64tab[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *out++ = b64tab[v >> 18];
        *out++ = b64tab[(v >> 12) & 63];
        *out++ = b64tab[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = 0;
}

int ws_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t buf[128];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (key_len > sizeof buf - (sizeof WS_GUID - 1)) return WS_E_INVAL;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, WS_GUID, sizeof WS_GUID - 1);
    if (EVP_Digest(buf, key_len + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        mdlen != 20)
        return WS_E_INVAL;
    b64(md, 20, out);
    return 0;
}

static int rnd4(struct ws *w, uint8_t k[4])
{
    if (w->rnd_pos + 4 > sizeof w->rnd) {
        if (RAND_bytes(w->rnd, sizeof w->rnd) != 1) return WS_E_RANDOM;
        w->rnd_pos = 0;
    }
    memcpy(k, w->rnd + w->rnd_pos, 4);
    w->rnd_pos += 4;
    return 0;
}

/* dst[i] = src[i] ^ key[i % 4]; dst may equal src. 32 then 8 bytes per step. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4])
{
    uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    uint64_t m;
    memcpy(&m, k8, 8);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= m;
        b ^= m;
        c ^= m;
        d ^= m;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= m;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i & 3];
}

static size_t hdr_len_for(uint64_t n)
{
    return (n < 126 ? 2 : n <= 0xFFFF ? 4 : 10) + 4;
}

/* Writes a masked client frame header for payload length n; returns its size. */
static size_t put_header(uint8_t *o, unsigned b0, uint64_t n, const uint8_t key[4])
{
    size_t h;
    o[0] = (uint8_t)b0;
    if (n < 126) {
        o[1] = (uint8_t)(0x80 | n);
        h = 2;
    } else if (n <= 0xFFFF) {
        o[1] = 0x80 | 126;
        o[2] = (uint8_t)(n >> 8);
        o[3] = (uint8_t)n;
        h = 4;
    } else {
        o[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            o[2 + i] = (uint8_t)(n >> (56 - 8 * i));
        h = 10;
    }
    memcpy(o + h, key, 4);
    return h + 4;
}

/* Queues one frame with payload p[0..n), masked. */
static int tx_frame(struct ws *w, unsigned b0, const uint8_t *p, size_t n)
{
    uint8_t key[4];
    if (rnd4(w, key)) return WS_E_RANDOM;
    if (n > SIZE_MAX - MAX_HDR) return WS_E_NOMEM;
    uint8_t *o = ws_buf_reserve(&w->out, MAX_HDR + n);
    if (!o) return WS_E_NOMEM;
    size_t h = put_header(o, b0, n, key);
    mask_copy(o + h, p, n, key);
    ws_buf_commit(&w->out, h + n);
    return 0;
}

/* Queues the deflated form of p[0..n) as one frame (none when a non-final
 * piece produced no output; *emitted tells). */
static int tx_zframe(struct ws *w, unsigned b0, const uint8_t *p, size_t n, int final, int *emitted)
{
    uint8_t key[4];
    size_t made = 0;
    *emitted = 0;
    if (rnd4(w, key)) return WS_E_RANDOM;
    size_t base = ws_buf_len(&w->out);
    if (!ws_buf_reserve(&w->out, MAX_HDR)) return WS_E_NOMEM;
    ws_buf_commit(&w->out, MAX_HDR);
    int r = ws_deflate_piece(w->z, p, n, final, &w->out, &made);
    if (r || (made == 0 && !final)) {
        w->out.wr = w->out.rd + base;
        return r;
    }
    uint8_t *f = w->out.data + w->out.rd + base;
    size_t h = hdr_len_for(made);
    memmove(f + h, f + MAX_HDR, made);
    put_header(f, b0, made, key);
    mask_copy(f + h, f + h, made, key);
    w->out.wr = w->out.rd + base + h + made;
    *emitted = 1;
    return 0;
}

/* Queues a close frame (code 0: empty payload). Reason is cut to 123 bytes. */
static int tx_close(struct ws *w, int code, const char *reason, size_t n)
{
    uint8_t pl[125];
    size_t len = 0;
    if (code) {
        if (n > 123) n = 123;
        pl[0] = (uint8_t)(code >> 8);
        pl[1] = (uint8_t)code;
        if (n) memcpy(pl + 2, reason, n);
        len = 2 + n;
    }
    int r = tx_frame(w, 0x80 | WS_OP_CLOSE, pl, len);
    if (r == 0) w->close_sent = 1;
    return r;
}

/* Fails the connection: queues a close frame with code (unless one was sent
 * or the handshake is not done), reports on_close(clean=0), returns err. */
static ssize_t fail(struct ws *w, int code, const char *why, int err)
{
    if (w->state == WS_CLOSED) return err;
    int sent_now = 0;
    if (w->state != WS_CONNECTING && !w->close_sent && code != 1006) {
        /* Cut the reason at a character boundary: our texts are ASCII. */
        sent_now = tx_close(w, code, why, strlen(why)) == 0;
    }
    if (w->state == WS_CONNECTING || (!sent_now && !w->close_sent)) code = 1006;
    w->state = WS_CLOSED;
    if (w->cb.on_close) w->cb.on_close(w->cb.ctx, 0, code, why, strlen(why), 0);
    return err;
}

static ssize_t hs_fail(struct ws *w, int status, const char *why)
{
    w->hs_failed = 1;
    w->hs_status = status;
    w->hs_why = why;
    ws_buf_free(&w->hs);
    return fail(w, 1006, why, WS_E_HANDSHAKE);
}

/* ---- construction ---- */

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F) return 1;
    return 0;
}

static int is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7F || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
    }
    return 1;
}

static int put_str(struct ws_buf *b, const char *s)
{
    return ws_buf_append(b, s, strlen(s));
}

struct ws *ws_new(const struct ws_opts *o, const struct ws_callbacks *cb)
{
    if (!o || !cb || !o->host || !o->path || !*o->host || o->path[0] != '/' || has_ctl(o->host) ||
        has_ctl(o->path) || strchr(o->path, ' ') || o->compression < 0 || o->compression > 2 ||
        (o->n_hdrs && (!o->hdr_names || !o->hdr_values)) || (o->n_protocols && !o->protocols))
        return NULL;
    size_t plen = 0;
    for (size_t i = 0; i < o->n_protocols; i++) {
        if (!o->protocols[i] || !is_token(o->protocols[i])) return NULL;
        plen += strlen(o->protocols[i]) + 1;
    }
    for (size_t i = 0; i < o->n_hdrs; i++)
        if (!o->hdr_names[i] || !o->hdr_values[i] || !is_token(o->hdr_names[i]) ||
            has_ctl(o->hdr_values[i]))
            return NULL;

    struct ws *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->cb = *cb;
    w->state = WS_CONNECTING;
    w->read_limit = o->read_limit;
    w->threshold = o->compression_threshold;
    w->comp_mode = o->compression;
    w->max_hs = o->max_handshake ? o->max_handshake : DEFAULT_HS;
    w->rnd_pos = sizeof w->rnd;
    w->rx = RX_HEAD;
    ws_utf8_init(&w->utf8);
    if (plen) {
        w->protos = malloc(plen);
        if (!w->protos) goto fail;
        char *q = w->protos;
        for (size_t i = 0; i < o->n_protocols; i++) {
            size_t l = strlen(o->protocols[i]) + 1;
            memcpy(q, o->protocols[i], l);
            q += l;
        }
        w->n_protos = o->n_protocols;
    }

    uint8_t raw[16];
    char key[25];
    if (RAND_bytes(raw, sizeof raw) != 1) goto fail;
    b64(raw, sizeof raw, key);
    if (ws_accept_key(key, 24, w->accept)) goto fail;

    struct ws_buf *b = &w->out;
    int bad = put_str(b, "GET ") | put_str(b, o->path) | put_str(b, " HTTP/1.1\r\nHost: ") |
              put_str(b, o->host) |
              put_str(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ") |
              put_str(b, key) | put_str(b, "\r\nSec-WebSocket-Version: 13\r\n");
    if (o->n_protocols) {
        bad |= put_str(b, "Sec-WebSocket-Protocol: ");
        for (size_t i = 0; i < o->n_protocols; i++) {
            if (i) bad |= put_str(b, ", ");
            bad |= put_str(b, o->protocols[i]);
        }
        bad |= put_str(b, "\r\n");
    }
    if (o->compression)
        bad |= put_str(b, "Sec-WebSocket-Extensions: ") | put_str(b, ws_pmd_offer(o->compression)) |
               put_str(b, "\r\n");
    for (size_t i = 0; i < o->n_hdrs; i++)
        bad |= put_str(b, o->hdr_names[i]) | put_str(b, ": ") | put_str(b, o->hdr_values[i]) |
               put_str(b, "\r\n");
    bad |= put_str(b, "\r\n");
    if (bad) goto fail;
    return w;
fail:
    ws_free(w);
    return NULL;
}

void ws_free(struct ws *w)
{
    if (!w) return;
    ws_buf_free(&w->out);
    ws_buf_free(&w->hs);
    ws_deflate_free(w->z);
    free(w->zbuf);
    free(w->protos);
    free(w->protocol);
    free(w->extensions);
    free(w);
}

/* ---- handshake response ---- */

static int eq_nocase(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static int is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* 1 when the comma-separated list v[0..n) contains the token tok. */
static int list_has(const char *v, size_t n, const char *tok)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && eq_nocase(v + s, e - s, tok)) return 1;
    }
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Parses the complete head in w->hs; on success the connection is open. */
static ssize_t hs_parse(struct ws *w)
{
    const char *s = (const char *)w->hs.data + w->hs.rd;
    const char *end = s + ws_buf_len(&w->hs);
    const char *proto = NULL, *ext = NULL;
    size_t proto_n = 0, ext_n = 0;
    int n_upg = 0, upg_ok = 0, conn_ok = 0, n_acc = 0, acc_ok = 0, n_proto = 0, n_ext = 0;
    int status = 0;

    for (int first = 1; s < end; first = 0) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl) nl = end;
        const char *le = nl;
        if (le > s && le[-1] == '\r') le--;
        size_t len = (size_t)(le - s);
        const char *line = s;
        s = nl < end ? nl + 1 : end;
        if (first) {
            if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
                (len > 12 && line[12] != ' '))
                return hs_fail(w, 0, "malformed HTTP status line");
            for (int i = 9; i < 12; i++) {
                if (line[i] < '0' || line[i] > '9')
                    return hs_fail(w, 0, "malformed HTTP status line");
                status = status * 10 + (line[i] - '0');
            }
            if (status >= 300 && status < 400)
                return hs_fail(w, status, "HTTP redirect (not followed)");
            if (status != 101)
                return hs_fail(w, status, "HTTP status is not 101 Switching Protocols");
            if (line[7] != '1') return hs_fail(w, status, "101 response is not HTTP/1.1");
            continue;
        }
        if (len == 0) break;
        if (line[0] == ' ' || line[0] == '\t')
            return hs_fail(w, status, "folded header line in response");
        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line) return hs_fail(w, status, "malformed header line in response");
        for (const char *q = line; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return hs_fail(w, status, "malformed header name in response");
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        const char *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vlen = (size_t)(ve - v);
        if (eq_nocase(line, nlen, "upgrade")) {
            n_upg++;
            upg_ok = eq_nocase(v, vlen, "websocket");
        } else if (eq_nocase(line, nlen, "connection")) {
            conn_ok |= list_has(v, vlen, "upgrade");
        } else if (eq_nocase(line, nlen, "sec-websocket-accept")) {
            n_acc++;
            acc_ok = vlen == 28 && memcmp(v, w->accept, 28) == 0;
        } else if (eq_nocase(line, nlen, "sec-websocket-protocol")) {
            n_proto++;
            proto = v;
            proto_n = vlen;
        } else if (eq_nocase(line, nlen, "sec-websocket-extensions")) {
            n_ext++;
            ext = v;
            ext_n = vlen;
        }
    }
    if (n_upg != 1 || !upg_ok) return hs_fail(w, status, "missing or wrong Upgrade header");
    if (!conn_ok) return hs_fail(w, status, "Connection header lacks 'upgrade'");
    if (n_acc == 0) return hs_fail(w, status, "missing Sec-WebSocket-Accept");
    if (n_acc > 1) return hs_fail(w, status, "duplicate Sec-WebSocket-Accept");
    if (!acc_ok) return hs_fail(w, status, "wrong Sec-WebSocket-Accept");
    if (n_proto > 1) return hs_fail(w, status, "duplicate Sec-WebSocket-Protocol");
    if (n_proto) {
        int found = 0;
        const char *q = w->protos;
        for (size_t i = 0; i < w->n_protos && !found; i++) {
            size_t l = strlen(q);
            found = l == proto_n && memcmp(q, proto, l) == 0;
            q += l + 1;
        }
        if (!found) return hs_fail(w, status, "server chose a subprotocol we did not offer");
    }
    if (n_ext > 1) return hs_fail(w, status, "duplicate Sec-WebSocket-Extensions");
    const char *why = NULL;
    if (n_ext && ws_pmd_negotiate(ext, ext_n, w->comp_mode, &w->pmd, &why))
        return hs_fail(w, status, why);
    w->protocol = dup_n(proto ? proto : "", proto_n);
    w->extensions = dup_n(ext && w->pmd.on ? ext : "", w->pmd.on ? ext_n : 0);
    if (!w->protocol || !w->extensions) return hs_fail(w, status, "out of memory");
    if (w->pmd.on) {
        w->z = ws_deflate_new(&w->pmd);
        if (!w->z) return hs_fail(w, status, "out of memory");
    }
    ws_buf_free(&w->hs);
    w->hs_status = status;
    w->state = WS_OPEN;
    if (w->cb.on_open) w->cb.on_open(w->cb.ctx, w->protocol, w->extensions);
    return 0;
}

/* Collects the response head; returns bytes consumed (all of n while the
 * head is incomplete, up to the blank line once complete) or negative. */
static ssize_t hs_feed(struct ws *w, const uint8_t *p, size_t n)
{
    size_t i = 0;
    int done = 0;
    size_t line = w->hs_line;
    for (; i < n; i++) {
        uint8_t c = p[i];
        if (c == '\n') {
            if (line == 0) {
                done = 1;
                i++;
                break;
            }
            line = 0;
        } else if (c != '\r') {
            line++;
        }
    }
    w->hs_line = line;
    if (ws_buf_len(&w->hs) + i > w->max_hs)
        return hs_fail(w, 0, "response head larger than max_handshake");
    if (ws_buf_append(&w->hs, p, i)) return hs_fail(w, 0, "out of memory");
    if (!done) return (ssize_t)i;
    ssize_t r = hs_parse(w);
    return r < 0 ? r : (ssize_t)i;
}

int ws_handshake_failed(struct ws *w, int *http_status, const char **why)
{
    if (!w->hs_failed) return 0;
    if (http_status) *http_status = w->hs_status;
    if (why) *why = w->hs_why;
    return 1;
}

/* ---- receive ---- */

static ssize_t proto_err(struct ws *w, const char *why)
{
    return fail(w, 1002, why, WS_E_PROTOCOL);
}

/* Checks the first header byte as soon as it is there; 0 or a failure. */
static ssize_t check_b0(struct ws *w, uint8_t b0)
{
    int op = b0 & 0x0F;
    if (b0 & 0x30) return proto_err(w, "reserved bits RSV2/RSV3 set");
    if (op >= 8) {
        if (op > WS_OP_PONG) return proto_err(w, "unknown opcode");
        if (!(b0 & 0x80)) return proto_err(w, "fragmented control frame");
        if (b0 & 0x40) return proto_err(w, "RSV1 set on a control frame");
        return 0;
    }
    if (op > WS_OP_BINARY) return proto_err(w, "unknown opcode");
    if (b0 & 0x40) {
        if (!w->pmd.on) return proto_err(w, "RSV1 set without a negotiated extension");
        if (op == WS_OP_CONT) return proto_err(w, "RSV1 set on a continuation frame");
    }
    if (op == WS_OP_CONT && !w->msg_op)
        return proto_err(w, "continuation frame without a message in progress");
    if (op != WS_OP_CONT && w->msg_op)
        return proto_err(w, "new data message while a fragmented one is in progress");
    return 0;
}

/* Checks the second header byte (the first one passed check_b0). */
static ssize_t check_b1(struct ws *w, uint8_t b0, uint8_t b1)
{
    if (b1 & 0x80) return proto_err(w, "masked frame from server");
    if ((b0 & 0x08) && (b1 & 0x7F) > 125)
        return proto_err(w, "control frame longer than 125 bytes");
    return 0;
}

/* Header bytes needed given the first two. */
static size_t hdr_need(uint8_t b1)
{
    unsigned l = b1 & 0x7F;
    return l < 126 ? 2 : l == 126 ? 4 : 10;
}

/* Sets up the frame whose complete (validated) header is h. */
static ssize_t frame_start(struct ws *w, const uint8_t *h)
{
    uint64_t len = h[1] & 0x7F;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        if (len >> 63) return proto_err(w, "64-bit payload length with the top bit set");
    }
    int op = h[0] & 0x0F;
    w->fr_op = op;
    w->fr_fin = h[0] >> 7;
    w->fr_left = len;
    if (op >= 8) {
        w->ctrl_len = 0;
        w->rx = RX_CTRL;
        return 0;
    }
    if (op != WS_OP_CONT) {
        w->msg_op = op;
        w->msg_comp = (h[0] & 0x40) != 0;
        w->msg_size = 0;
        ws_utf8_init(&w->utf8);
        w->zfill = 0;
        w->zmore = 0;
        w->zend = 0;
        w->tail_off = 0;
    }
    if (w->msg_comp) {
        w->rx = RX_ZDATA;
        return 0;
    }
    if (len > w->read_limit - w->msg_size)
        return fail(w, 1009, "message larger than the read limit", WS_E_TOO_BIG);
    w->msg_size += len;
    w->rx = RX_DATA;
    return 0;
}

/* A complete control frame is in w->ctrl. */
static ssize_t control(struct ws *w)
{
    const uint8_t *p = w->ctrl;
    size_t n = w->ctrl_len;
    if (w->fr_op == WS_OP_PING) {
        if (w->state != WS_OPEN) return 0;
        uint64_t total = w->out_done + ws_buf_len(&w->out);
        if (ws_buf_len(&w->out) > PONG_BACKLOG && w->pong_end == total &&
            w->out_done <= w->pong_start) /* the unsent tail is our last pong */
            w->out.wr -= (size_t)(w->pong_end - w->pong_start);
        w->pong_start = w->out_done + ws_buf_len(&w->out);
        if (tx_frame(w, 0x80 | WS_OP_PONG, p, n))
            return fail(w, 1011, "cannot queue pong", WS_E_NOMEM);
        w->pong_end = w->out_done + ws_buf_len(&w->out);
        return 0;
    }
    if (w->fr_op == WS_OP_PONG) {
        if (w->cb.on_pong) w->cb.on_pong(w->cb.ctx, p, n);
        return 0;
    }
    /* close */
    int code = 1005;
    if (n == 1) return proto_err(w, "close frame with a 1-byte payload");
    if (n >= 2) {
        code = p[0] << 8 | p[1];
        if (!ws_close_code_valid(code)) return proto_err(w, "invalid close code");
        if (!ws_utf8_valid(p + 2, n - 2))
            return fail(w, 1007, "close reason is not UTF-8", WS_E_UTF8);
    }
    int by_peer = w->state == WS_OPEN;
    if (by_peer) tx_close(w, code == 1005 ? 0 : code, NULL, 0);
    w->state = WS_CLOSED;
    if (w->cb.on_close)
        w->cb.on_close(w->cb.ctx, 1, code, n > 2 ? (const char *)p + 2 : "", n > 2 ? n - 2 : 0,
                       by_peer);
    return 0;
}

static ssize_t utf8_fail(struct ws *w)
{
    return fail(w, 1007, "invalid UTF-8 in text message", WS_E_UTF8);
}

static const uint8_t deflate_tail[4] = {0x00, 0x00, 0xFF, 0xFF};

static uint8_t *zscratch; /* shared inflate output buffer (ZSCRATCH bytes), NULL until needed */
static int zscratch_busy; /* 1 while an rx_zdata call inflates into it */

/* Hands the inflated bytes held in zout on as a non-final chunk. Returns the
 * callback's pause request. */
static int zflush(struct ws *w)
{
    size_t len = w->zfill;
    w->zfill = 0;
    return len ? w->cb.on_message(w->cb.ctx, w->msg_op, w->zout, len, 0) : 0;
}

/* Runs the compressed payload state. Returns 1 to continue the frame loop,
 * 0 to return *off to the caller (need input or paused), or negative. */
static ssize_t rx_zdata_run(struct ws *w, const uint8_t *p, size_t n, size_t *off)
{
    for (;;) {
        if (w->zfill == w->zcap) {
            if (zflush(w)) return 0;
            if (w->state == WS_CLOSED) return 0;
        }
        const uint8_t *in;
        size_t in_n;
        int tail = 0;
        if (w->fr_left > 0) {
            in = p + *off;
            in_n = n - *off;
            if (in_n > w->fr_left) in_n = (size_t)w->fr_left;
            if (in_n == 0 && !w->zmore) {
                zflush(w); /* all input used: nothing may stay in zout */
                return 0;
            }
        } else if (w->fr_fin && w->tail_off < 4) {
            in = deflate_tail + w->tail_off;
            in_n = 4 - w->tail_off;
            tail = 1;
        } else if (w->zmore) {
            in = NULL;
            in_n = 0;
        } else {
            break;
        }
        size_t used = 0, made = 0;
        if (w->zend) {
            used = in_n; /* after a BFINAL block the rest of the message is ignored */
        } else {
            size_t cap = w->zcap - w->zfill;
            uint64_t rem = w->read_limit - w->msg_size;
            if (rem < cap) cap = (size_t)rem + 1;
            int r = ws_inflate(w->z, in, in_n, &used, w->zout + w->zfill, cap, &made);
            if (r < 0)
                return r == WS_E_NOMEM ? fail(w, 1011, "out of memory", r)
                                       : proto_err(w, "invalid compressed data");
            if (made) {
                w->msg_size += made;
                w->inflated += made;
                if (w->msg_size > w->read_limit)
                    return fail(w, 1009, "message larger than the read limit", WS_E_TOO_BIG);
                if (w->msg_op == WS_OP_TEXT &&
                    ws_utf8_feed(&w->utf8, w->zout + w->zfill, made, NULL))
                    return utf8_fail(w);
                w->zfill += made;
            }
            w->zmore = made == cap;
            if (r == 1) {
                w->zend = 1;
                w->zmore = 0;
            } else if (!made && !used && in_n) {
                return proto_err(w, "inflate made no progress");
            }
        }
        if (tail)
            w->tail_off += used;
        else {
            *off += used;
            w->fr_left -= used;
        }
    }
    /* Frame payload consumed and inflate drained. */
    w->rx = RX_HEAD;
    if (!w->fr_fin) return zflush(w) ? 0 : 1;
    if (!ws_inflate_at_boundary(w->z))
        return proto_err(w, "compressed message does not end on a deflate block boundary");
    if (w->msg_op == WS_OP_TEXT && !ws_utf8_done(&w->utf8)) return utf8_fail(w);
    int r = ws_inflate_end_msg(w->z);
    if (r) return fail(w, 1011, "inflate reset failed", r);
    int op = w->msg_op;
    size_t len = w->zfill;
    w->msg_op = 0;
    w->zfill = 0;
    if (w->cb.on_message(w->cb.ctx, op, w->zout, len, 1)) return 0;
    return 1;
}

/* Picks the inflate output buffer (the shared scratch unless a caller up the
 * stack is using it) and runs the compressed payload state in it. */
static ssize_t rx_zdata(struct ws *w, const uint8_t *p, size_t n, size_t *off)
{
    int own = 0;
    if (!zscratch_busy) {
        if (!zscratch) zscratch = malloc(ZSCRATCH);
        own = zscratch != NULL;
    }
    if (own) {
        zscratch_busy = 1;
        w->zout = zscratch;
        w->zcap = ZSCRATCH;
    } else {
        if (!w->zbuf) w->zbuf = malloc(ZBUF_SIZE);
        if (!w->zbuf) return fail(w, 1011, "out of memory", WS_E_NOMEM);
        w->zout = w->zbuf;
        w->zcap = ZBUF_SIZE;
    }
    w->zfill = 0;
    ssize_t r = rx_zdata_run(w, p, n, off);
    w->zfill = 0; /* after an error; otherwise already 0 */
    w->zout = NULL;
    if (own) zscratch_busy = 0;
    return r;
}

static ssize_t rx_feed(struct ws *w, const uint8_t *p, size_t n)
{
    size_t off = 0;
    ssize_t r;
    while (w->state != WS_CLOSED) {
        switch (w->rx) {
        case RX_HEAD: {
            size_t avail = n - off;
            if (avail == 0) return (ssize_t)off;
            const uint8_t *h;
            if (w->hdr_have == 0 && avail >= 2 && avail >= hdr_need(p[off + 1])) {
                h = p + off;
                if ((r = check_b0(w, h[0])) < 0 || (r = check_b1(w, h[0], h[1])) < 0) return r;
                off += hdr_need(h[1]);
            } else {
                if (w->hdr_have == 0) {
                    w->hdr[w->hdr_have++] = p[off++];
                    if ((r = check_b0(w, w->hdr[0])) < 0) return r;
                }
                if (w->hdr_have == 1) {
                    if (off == n) return (ssize_t)off;
                    w->hdr[w->hdr_have++] = p[off++];
                    if ((r = check_b1(w, w->hdr[0], w->hdr[1])) < 0) return r;
                }
                size_t need = hdr_need(w->hdr[1]);
                while (w->hdr_have < need && off < n)
                    w->hdr[w->hdr_have++] = p[off++];
                if (w->hdr_have < need) return (ssize_t)off;
                h = w->hdr;
                w->hdr_have = 0;
            }
            if ((r = frame_start(w, h)) < 0) return r;
            break;
        }
        case RX_CTRL: {
            size_t take = n - off;
            if (take > w->fr_left) take = (size_t)w->fr_left;
            memcpy(w->ctrl + w->ctrl_len, p + off, take);
            w->ctrl_len += take;
            w->fr_left -= take;
            off += take;
            if (w->fr_left) return (ssize_t)off;
            w->rx = RX_HEAD;
            if ((r = control(w)) < 0) return r;
            break;
        }
        case RX_DATA: {
            size_t take = n - off;
            if (take > w->fr_left) take = (size_t)w->fr_left;
            int last = w->fr_fin && take == w->fr_left;
            if (take == 0 && !last) {
                if (w->fr_left) return (ssize_t)off;
                w->rx = RX_HEAD; /* empty non-final frame: nothing to deliver */
                break;
            }
            const uint8_t *chunk = p + off;
            int op = w->msg_op;
            if (op == WS_OP_TEXT) {
                if (ws_utf8_feed(&w->utf8, chunk, take, NULL)) return utf8_fail(w);
                if (last && !ws_utf8_done(&w->utf8)) return utf8_fail(w);
            }
            off += take;
            w->fr_left -= take;
            if (w->fr_left == 0) {
                w->rx = RX_HEAD;
                if (w->fr_fin) w->msg_op = 0;
            }
            if (w->cb.on_message(w->cb.ctx, op, chunk, take, last)) return (ssize_t)off;
            break;
        }
        case RX_ZDATA:
            r = rx_zdata(w, p, n, &off);
            if (r < 0) return r;
            if (r == 0) return (ssize_t)off;
            break;
        }
    }
    return (ssize_t)off;
}

uint64_t ws_rx_payload_left(const struct ws *w, int *op, int *fin)
{
    if (w->state == WS_CLOSED || w->state == WS_CONNECTING || w->rx != RX_DATA || !w->fr_left)
        return 0;
    *op = w->msg_op;
    *fin = w->fr_fin;
    return w->fr_left;
}

ssize_t ws_rx_payload_done(struct ws *w, const uint8_t *p, size_t n)
{
    if (w->state == WS_CLOSED || w->rx != RX_DATA || n > w->fr_left) return WS_E_STATE;
    int last = w->fr_fin && n == w->fr_left;
    if (w->msg_op == WS_OP_TEXT) {
        if (ws_utf8_feed(&w->utf8, p, n, NULL)) return utf8_fail(w);
        if (last && !ws_utf8_done(&w->utf8)) return utf8_fail(w);
    }
    w->fr_left -= n;
    if (w->fr_left == 0) {
        w->rx = RX_HEAD;
        if (w->fr_fin) w->msg_op = 0;
    }
    return last;
}

ssize_t ws_feed(struct ws *w, const uint8_t *p, size_t n)
{
    static const uint8_t none[1];
    if (w->state == WS_CLOSED) return 0;
    if (!p) p = none, n = 0;
    size_t off = 0;
    if (w->state == WS_CONNECTING) {
        ssize_t r = hs_feed(w, p, n);
        if (r < 0) return r;
        off = (size_t)r;
        if (w->state == WS_CONNECTING) return (ssize_t)off;
    }
    ssize_t r = rx_feed(w, p + off, n - off);
    return r < 0 ? r : (ssize_t)off + r;
}

/* ---- output and sending ---- */

size_t ws_out_pending(const struct ws *w)
{
    return ws_buf_len(&w->out);
}

const uint8_t *ws_out_peek(const struct ws *w, size_t *len)
{
    *len = ws_buf_len(&w->out);
    return *len ? w->out.data + w->out.rd : NULL;
}

void ws_out_consume(struct ws *w, size_t n)
{
    w->out_done += n < ws_buf_len(&w->out) ? n : ws_buf_len(&w->out);
    ws_buf_consume(&w->out, n);
}

int ws_state(const struct ws *w)
{
    return w->state;
}

uint64_t ws_inflated_total(const struct ws *w)
{
    return w->inflated;
}

/* 0 in WS_OPEN, else WS_E_STATE (not open yet) or WS_E_CLOSED. */
static int check_open(const struct ws *w)
{
    return w->state == WS_OPEN ? 0 : w->state == WS_CONNECTING ? WS_E_STATE : WS_E_CLOSED;
}

/* Sends piece p[0..n) of the current message; final when it completes it. */
static int tx_piece(struct ws *w, const uint8_t *p, size_t n, int final)
{
    unsigned b0 = (final ? 0x80u : 0u) | (unsigned)(w->tx_first ? w->tx_op : WS_OP_CONT);
    int r;
    if (w->tx_comp) {
        int emitted = 0;
        if (w->tx_first) b0 |= 0x40;
        r = tx_zframe(w, b0, p, n, final, &emitted);
        if (r == 0 && emitted) w->tx_first = 0;
    } else {
        r = tx_frame(w, b0, p, n);
        if (r == 0) w->tx_first = 0;
    }
    return r;
}

int ws_send_begin(struct ws *w, int binary, uint64_t total)
{
    int r = check_open(w);
    if (r) return r;
    if (w->tx_active) return WS_E_STATE;
    w->tx_op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    w->tx_comp = w->z && ws_deflate_can_send(w->z) && total >= w->threshold;
    w->tx_first = 1;
    w->tx_left = total;
    if (total == 0) return tx_piece(w, NULL, 0, 1);
    w->tx_active = 1;
    return 0;
}

int ws_send_data(struct ws *w, const uint8_t *p, size_t n)
{
    int r = check_open(w);
    if (r) return r;
    if (!w->tx_active) return WS_E_STATE;
    if (n > w->tx_left) return WS_E_LENGTH;
    if (n == 0) return 0;
    int final = n == w->tx_left;
    r = tx_piece(w, p, n, final);
    if (r) return r;
    w->tx_left -= n;
    if (final) w->tx_active = 0;
    return 0;
}

int ws_send(struct ws *w, int binary, const uint8_t *p, size_t n)
{
    int r = ws_send_begin(w, binary, n);
    if (r || n == 0) return r;
    return ws_send_data(w, p, n);
}

int ws_ping(struct ws *w, const uint8_t *p, size_t n)
{
    int r = check_open(w);
    if (r) return r;
    if (n > 125) return WS_E_INVAL;
    return tx_frame(w, 0x80 | WS_OP_PING, p, n);
}

int ws_close(struct ws *w, int code, const char *reason, size_t n)
{
    int r = check_open(w);
    if (r) return r;
    if (code == 0 ? n != 0 : !ws_close_code_valid(code)) return WS_E_INVAL;
    if (n > 123 || (n && !ws_utf8_valid((const uint8_t *)reason, n))) return WS_E_INVAL;
    r = tx_close(w, code, reason, n);
    if (r) return r;
    w->state = WS_CLOSING;
    return 0;
}

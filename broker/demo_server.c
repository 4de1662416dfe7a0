/*
 * demo_server.c - `broker demo-server`: the path-based test protocol
 * (tests/peers/README.md) on the libwebsockets 4.1 server role.
 *
 * Layer: broker/, but only as a test and demo aid: the broker's own client
 * protocol core is not used here, and nothing here is used by it. Depends on
 * libwebsockets (server role, its permessage-deflate extension, timers) and
 * libc only; never on lua/, worker/, shm/ or sandbox/.
 *
 * Design: one lws context, one vhost, three protocol entries sharing one
 * callback (the unnamed default plus the subprotocols "chat.v2" and
 * "graphql-ws"). Each connection is a `ds_sess` holding a queue of outgoing
 * messages with LWS_PRE headroom; writes happen only in the writeable
 * callback, one lws_write() per callback, so nothing ever blocks. /blast
 * writes pre-framed messages in 64 KiB batches with LWS_WRITE_RAW (those
 * frames are never compressed, which permessage-deflate allows). Inbound
 * messages are assembled up to DS_MAX_MSG; a peer that stops reading is
 * throttled (rx flow control) or, past DS_QUEUE_MAX, closed with 1008.
 *
 * permessage-deflate is off unless --deflate is given: lws 4.1.6's extension
 * handles a plain offer and client_no_context_takeover, but fails to inflate
 * when the client offers server_no_context_takeover or client_max_window_bits
 * below 15, ignores server_max_window_bits, and asserts on empty messages
 * (which we therefore always send pre-framed). See tests/peers/README.md.
 */
#include "broker/demo_server.h"

#include <libwebsockets.h>

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DS_MAX_MSG     (64u << 20) /* bytes: largest inbound message we assemble */
#define DS_QUEUE_PAUSE (1u << 20)  /* bytes queued out before we stop reading a peer */
#define DS_QUEUE_MAX   (64u << 20) /* bytes queued out before a slow peer is dropped */
#define DS_BATCH       65536       /* bytes of pre-framed /blast messages per write */
#define DS_MAX_ROOMS   16          /* chat rooms one connection may join */
#define DS_MAX_SYMS    64          /* price symbols one subscription may name */
#define DS_MAX_SPAN    512         /* bytes of one stored room or symbol (raw JSON) */
#define DS_JSON_DEPTH  32          /* nesting limit of the tiny JSON scanner */

/* The text frame /invalid_utf8 sends: valid UTF-8 up to an encoded surrogate. */
static const unsigned char ds_bad_utf8[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83,
                                            0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
                                            'e',  'd',  'i',  't',  'e',  'd'};

enum ds_kind { DS_TEXT, DS_BINARY, DS_PING, DS_RAW };

/* One queued outgoing message; `buf` has LWS_PRE bytes of headroom. */
struct ds_msg {
    struct ds_msg *next; /* next in the session queue (owned by the session) */
    size_t len;          /* payload bytes after the headroom */
    enum ds_kind kind;   /* frame type; DS_RAW is already-framed wire bytes */
    unsigned char buf[]; /* LWS_PRE + len bytes */
};

enum ds_path {
    P_UNKNOWN,
    P_ECHO,
    P_CHAT,
    P_PRICES,
    P_HEADERS,
    P_SUBPROTO,
    P_CLOSE,
    P_BLAST,
    P_COUNT,
    P_INVALID,
    P_BIG,
    P_PING,
};

static const char *const ds_path_names[] = {"",         "/echo",         "/chat",  "/prices",
                                            "/headers", "/subproto",     "/close", "/blast",
                                            "/count",   "/invalid_utf8", "/big",   "/ping"};

/* An owned copy of a raw JSON value (a room name or a price symbol). */
struct ds_span {
    char *p;  /* malloc'd bytes, not NUL-terminated in meaning (owned) */
    size_t n; /* length in bytes */
};

/* Per-connection state; lws allocates it zeroed (per_session_data_size). */
struct ds_sess {
    struct lws *wsi;                    /* the connection (borrowed from lws) */
    struct ds_sess *prev, *next;        /* list of open sessions (ds.sessions) */
    enum ds_path path;                  /* which test application runs */
    unsigned id;                        /* connection number, 1-based, for /chat "from" */
    struct ds_msg *head, *tail;         /* outgoing queue (owned) */
    struct ds_msg *inflight;            /* last message written; kept until the next
                                           writeable callback because lws' deflate may
                                           still read from it (owned) */
    size_t queued;                      /* payload bytes in the queue */
    int rx_paused;                      /* we turned rx flow control off */
    unsigned char *rx;                  /* inbound message being assembled (owned) */
    size_t rx_len, rx_cap;              /* bytes used / allocated in rx */
    int rx_active;                      /* a message has started and not yet finished */
    int rx_binary;                      /* the message being assembled is binary */
    int closing;                        /* close after the queue drains */
    int raw_closed;                     /* our own close frame is queued (/close): send
                                           nothing more, do not echo the peer's close */
    int close_code;                     /* code to send when closing (1005: none) */
    unsigned char close_reason[124];    /* reason bytes */
    size_t close_reason_len;            /* reason length */
    uint64_t blast_left;                /* /blast messages still to write */
    size_t blast_size;                  /* /blast payload bytes per message */
    size_t blast_frame;                 /* wire bytes of one pre-framed message, or 0 when
                                           messages go one per lws_write() */
    int blast_binary;                   /* /blast sends binary messages */
    unsigned char *blast_buf;           /* LWS_PRE + frames or payload (owned) */
    lws_sorted_usec_list_t sul;         /* /prices tick timer */
    unsigned interval_ms;               /* /prices tick period */
    int64_t price_limit;                /* /prices updates to send, -1 = unlimited */
    int64_t price_seq;                  /* /prices updates sent */
    struct ds_span syms[DS_MAX_SYMS];   /* /prices subscribed symbols (raw JSON, owned) */
    int nsyms;                          /* entries used in syms */
    struct ds_span rooms[DS_MAX_ROOMS]; /* /chat joined rooms (raw JSON, owned) */
    int nrooms;                         /* entries used in rooms */
    uint64_t rx_count, rx_bytes;        /* /count totals */
    int64_t chat_left;                  /* /chat?close_after=N: messages to send before
                                           closing with 1000, -1 = unlimited */
};

/* Process-wide state of the one demo server. */
static struct {
    struct lws_context *ctx;    /* the lws context (owned) */
    struct ds_sess *sessions;   /* open sessions (borrowed from lws) */
    unsigned next_id;           /* last connection number handed out */
    volatile sig_atomic_t stop; /* set by SIGTERM/SIGINT */
} ds;

/* ---- small helpers ---------------------------------------------------------------- */

static size_t ds_frame_header(unsigned char *p, int opcode, uint64_t len)
{
    p[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        p[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        p[1] = 126;
        p[2] = (unsigned char)(len >> 8);
        p[3] = (unsigned char)len;
        return 4;
    }
    p[1] = 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

static void ds_pattern(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i % 251);
}

/* Query argument `name` as an unsigned integer, clamped to max; dflt if absent or bad. */
static uint64_t ds_arg_u64(struct lws *wsi, const char *name, uint64_t dflt, uint64_t max)
{
    char key[32], buf[64], *end;
    snprintf(key, sizeof(key), "%s=", name);
    const char *v = lws_get_urlarg_by_name(wsi, key, buf, (int)sizeof(buf));
    if (!v || !isdigit((unsigned char)*v)) return dflt;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno) return dflt;
    return x > max ? max : x;
}

static void ds_span_free(struct ds_span *s)
{
    free(s->p);
    s->p = NULL;
    s->n = 0;
}

static int ds_span_set(struct ds_span *s, const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (!c) return -1;
    memcpy(c, p, n);
    free(s->p);
    s->p = c;
    s->n = n;
    return 0;
}

/* ---- a tiny JSON scanner: finds raw value spans, never allocates ------------------ */

static const char *ds_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Returns the end of the JSON value starting at p, or NULL if it is malformed. */
static const char *ds_skip(const char *p, const char *e, int depth)
{
    p = ds_ws(p, e);
    if (p >= e || depth > DS_JSON_DEPTH) return NULL;
    if (*p == '"') {
        for (p++; p < e; p++) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                return p + 1;
        }
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = ds_ws(p + 1, e);
        if (p < e && *p == close) return p + 1;
        for (;;) {
            if (obj) {
                p = ds_skip(p, e, depth + 1);
                if (!p || (p = ds_ws(p, e)) >= e || *p++ != ':') return NULL;
            }
            p = ds_skip(p, e, depth + 1);
            if (!p || (p = ds_ws(p, e)) >= e) return NULL;
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    const char *s = p;
    while (p < e && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.'))
        p++;
    return p > s ? p : NULL;
}

/* Finds top-level member `key` (plain, unescaped) of the object in [p,e). */
static int ds_member(const char *p, const char *e, const char *key, const char **v, size_t *vn)
{
    size_t kn = strlen(key);
    p = ds_ws(p, e);
    if (p >= e || *p != '{') return -1;
    p = ds_ws(p + 1, e);
    while (p < e && *p == '"') {
        const char *ks = p + 1, *ke = ds_skip(p, e, 1);
        if (!ke || (p = ds_ws(ke, e)) >= e || *p++ != ':') return -1;
        const char *vs = ds_ws(p, e), *ve = ds_skip(vs, e, 1);
        if (!ve) return -1;
        if ((size_t)(ke - 1 - ks) == kn && !memcmp(ks, key, kn)) {
            *v = vs;
            *vn = (size_t)(ve - vs);
            return 0;
        }
        p = ds_ws(ve, e);
        if (p < e && *p == ',') p = ds_ws(p + 1, e);
    }
    return -1;
}

static int ds_member_is(const char *p, const char *e, const char *key, const char *lit)
{
    const char *v;
    size_t n;
    return !ds_member(p, e, key, &v, &n) && n == strlen(lit) && !memcmp(v, lit, n);
}

/* ---- outgoing queue --------------------------------------------------------------- */

static void ds_close_soon(struct ds_sess *s, int code, const char *reason)
{
    if (s->closing) return;
    s->closing = 1;
    s->close_code = code;
    s->close_reason_len = strnlen(reason, sizeof(s->close_reason));
    memcpy(s->close_reason, reason, s->close_reason_len);
    lws_callback_on_writable(s->wsi);
}

static void ds_queue_free(struct ds_sess *s)
{
    while (s->head) {
        struct ds_msg *m = s->head;
        s->head = m->next;
        free(m);
    }
    s->tail = NULL;
    s->queued = 0;
}

/* Queues one message; a peer whose queue grows past DS_QUEUE_MAX is closed instead. */
static void ds_send(struct ds_sess *s, enum ds_kind kind, const void *data, size_t len)
{
    if (s->closing || s->raw_closed) return;
    if (!len && (kind == DS_TEXT || kind == DS_BINARY)) {
        /* lws' deflate asserts on empty messages: send them pre-framed instead. */
        unsigned char f[2] = {kind == DS_TEXT ? 0x81 : 0x82, 0};
        ds_send(s, DS_RAW, f, 2);
        return;
    }
    if (s->queued + len > DS_QUEUE_MAX) {
        ds_queue_free(s);
        ds_close_soon(s, 1008, "too slow");
        return;
    }
    struct ds_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m) {
        ds_queue_free(s);
        ds_close_soon(s, 1011, "out of memory");
        return;
    }
    m->next = NULL;
    m->len = len;
    m->kind = kind;
    if (len) memcpy(m->buf + LWS_PRE, data, len);
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->queued += len;
    if (s->queued > DS_QUEUE_PAUSE && !s->rx_paused) {
        s->rx_paused = 1;
        lws_rx_flow_control(s->wsi, 0);
    }
    lws_callback_on_writable(s->wsi);
}

static void ds_send_text(struct ds_sess *s, const char *text)
{
    ds_send(s, DS_TEXT, text, strlen(text));
}

/*
 * Queues a close frame we build ourselves, so that /close can send any code
 * (1005 as an empty payload, also codes lws would refuse) and any reason.
 */
static void ds_send_raw_close(struct ds_sess *s, unsigned code, const char *reason)
{
    unsigned char f[2 + 125];
    size_t rl = strnlen(reason, 123), n = 2;
    f[0] = 0x88;
    if (code != 1005) {
        f[n++] = (unsigned char)(code >> 8);
        f[n++] = (unsigned char)code;
        memcpy(f + n, reason, rl);
        n += rl;
    }
    f[1] = (unsigned char)(n - 2);
    ds_send(s, DS_RAW, f, n);
    s->raw_closed = 1;
}

/* Writes the next piece of output; returns -1 to have lws close the connection. */
static int ds_writeable(struct ds_sess *s)
{
    free(s->inflight);
    s->inflight = NULL;
    if (s->head) {
        static const enum lws_write_protocol wp[] = {LWS_WRITE_TEXT, LWS_WRITE_BINARY,
                                                     LWS_WRITE_PING, LWS_WRITE_RAW};
        struct ds_msg *m = s->head;
        s->head = m->next;
        if (!s->head) s->tail = NULL;
        s->queued -= m->len;
        s->inflight = m;
        if (lws_write(s->wsi, m->buf + LWS_PRE, m->len, wp[m->kind]) < (int)m->len) return -1;
        if (s->rx_paused && s->queued < DS_QUEUE_PAUSE / 2) {
            s->rx_paused = 0;
            lws_rx_flow_control(s->wsi, 1);
        }
        if (s->head || s->blast_left || s->closing)
            lws_callback_on_writable(s->wsi);
        else if (s->raw_closed)
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 5);
        return 0;
    }
    if (s->blast_left && !s->closing) {
        unsigned char *p = s->blast_buf + LWS_PRE;
        if (s->blast_frame) {
            uint64_t k = DS_BATCH / s->blast_frame;
            if (k > s->blast_left) k = s->blast_left;
            size_t n = (size_t)k * s->blast_frame;
            if (lws_write(s->wsi, p, n, LWS_WRITE_RAW) < (int)n) return -1;
            s->blast_left -= k;
        } else {
            int type = s->blast_binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
            if (lws_write(s->wsi, p, s->blast_size, type) < (int)s->blast_size) return -1;
            s->blast_left--;
        }
        if (!s->blast_left) ds_send_text(s, "END");
        lws_callback_on_writable(s->wsi);
        return 0;
    }
    if (s->closing) {
        if (s->close_code == 1005)
            lws_close_reason(s->wsi, LWS_CLOSE_STATUS_NOSTATUS, NULL, 0);
        else
            lws_close_reason(s->wsi, (enum lws_close_status)s->close_code, s->close_reason,
                             s->close_reason_len);
        return -1;
    }
    return 0;
}

/* ---- applications ----------------------------------------------------------------- */

static void ds_prices_tick(lws_sorted_usec_list_t *sul)
{
    struct ds_sess *s = lws_container_of(sul, struct ds_sess, sul);
    char buf[DS_MAX_SPAN + 64];
    for (int i = 0; i < s->nsyms; i++) {
        if (s->price_limit >= 0 && s->price_seq >= s->price_limit) break;
        s->price_seq++;
        int n = snprintf(buf, sizeof(buf), "{\"symbol\":%.*s,\"value\":%lld}", (int)s->syms[i].n,
                         s->syms[i].p, (long long)(100 + s->price_seq));
        ds_send(s, DS_TEXT, buf, (size_t)n);
    }
    if (s->price_limit >= 0 && s->price_seq >= s->price_limit)
        ds_close_soon(s, 1000, "done");
    else if (!s->closing)
        lws_sul_schedule(ds.ctx, 0, &s->sul, ds_prices_tick,
                         (lws_usec_t)s->interval_ms * LWS_US_PER_MS);
}

static void ds_prices_rx(struct ds_sess *s, const char *p, size_t n)
{
    const char *e = p + n, *v;
    size_t vn;
    if (!ds_member_is(p, e, "action", "\"subscribe\"") || ds_member(p, e, "symbols", &v, &vn) ||
        *v != '[')
        return;
    for (int i = 0; i < s->nsyms; i++)
        ds_span_free(&s->syms[i]);
    s->nsyms = 0;
    const char *q = ds_ws(v + 1, v + vn), *ve = v + vn;
    while (q < ve && *q != ']' && s->nsyms < DS_MAX_SYMS) {
        const char *end = ds_skip(q, ve, 1);
        if (!end) break;
        if ((size_t)(end - q) <= DS_MAX_SPAN && !ds_span_set(&s->syms[s->nsyms], q, end - q))
            s->nsyms++;
        q = ds_ws(end, ve);
        if (q < ve && *q == ',') q = ds_ws(q + 1, ve);
    }
    if (!lws_dll2_is_detached(&s->sul.list)) return;
    lws_sul_schedule(ds.ctx, 0, &s->sul, ds_prices_tick,
                     (lws_usec_t)s->interval_ms * LWS_US_PER_MS);
}

static int ds_in_room(struct ds_sess *s, const char *room, size_t n)
{
    for (int i = 0; i < s->nrooms; i++)
        if (s->rooms[i].n == n && !memcmp(s->rooms[i].p, room, n)) return 1;
    return 0;
}

/* Sends one chat message to s; closes it when its close_after count runs out. */
static void ds_chat_send(struct ds_sess *s, const char *p, size_t n)
{
    if (s->closing || s->chat_left == 0) return;
    ds_send(s, DS_TEXT, p, n);
    if (s->chat_left > 0 && --s->chat_left == 0) ds_close_soon(s, 1000, "room closed");
}

static void ds_chat_rx(struct ds_sess *s, const char *p, size_t n)
{
    const char *e = p + n, *room, *text;
    size_t rn, tn;
    if (ds_member(p, e, "room", &room, &rn) || rn > DS_MAX_SPAN) return;
    if (ds_member_is(p, e, "type", "\"join\"")) {
        if (!ds_in_room(s, room, rn) && s->nrooms < DS_MAX_ROOMS &&
            !ds_span_set(&s->rooms[s->nrooms], room, rn))
            s->nrooms++;
        char buf[DS_MAX_SPAN + 40];
        int k = snprintf(buf, sizeof(buf), "{\"type\":\"joined\",\"room\":%.*s}", (int)rn, room);
        ds_chat_send(s, buf, (size_t)k);
        return;
    }
    if (!ds_member_is(p, e, "type", "\"message\"")) return;
    if (ds_member(p, e, "text", &text, &tn)) {
        text = "null";
        tn = 4;
    }
    size_t cap = rn + tn + 80;
    char *buf = malloc(cap);
    if (!buf) return;
    int k = snprintf(buf, cap, "{\"type\":\"message\",\"room\":%.*s,\"text\":%.*s,\"from\":%u}",
                     (int)rn, room, (int)tn, text, s->id);
    for (struct ds_sess *o = ds.sessions; o; o = o->next)
        if (o->path == P_CHAT && ds_in_room(o, room, rn)) ds_chat_send(o, buf, (size_t)k);
    free(buf);
}

static void ds_message(struct ds_sess *s, const unsigned char *p, size_t n, int binary)
{
    switch (s->path) {
    case P_ECHO:
        ds_send(s, binary ? DS_BINARY : DS_TEXT, p, n);
        break;
    case P_CHAT:
        if (!binary) ds_chat_rx(s, (const char *)p, n);
        break;
    case P_PRICES:
        if (!binary) ds_prices_rx(s, (const char *)p, n);
        break;
    case P_COUNT:
        if (!binary && n == 6 && !memcmp(p, "REPORT", 6)) {
            char buf[96];
            snprintf(buf, sizeof(buf), "count=%llu bytes=%llu", (unsigned long long)s->rx_count,
                     (unsigned long long)s->rx_bytes);
            ds_send_text(s, buf);
        } else {
            s->rx_count++;
            s->rx_bytes += n;
        }
        break;
    default:
        break;
    }
}

/* Assembles message fragments; returns -1 to close (1009 for oversize). */
static int ds_receive(struct ds_sess *s, const void *in, size_t len)
{
    if (!s->rx_active) {
        s->rx_active = 1;
        s->rx_len = 0;
        s->rx_binary = lws_frame_is_binary(s->wsi);
    }
    if (s->rx_len + len > DS_MAX_MSG) {
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)"too big", 7);
        return -1;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len)
            cap *= 2;
        unsigned char *nb = realloc(s->rx, cap);
        if (!nb) return -1;
        s->rx = nb;
        s->rx_cap = cap;
    }
    if (len) memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi)) return 0;
    s->rx_active = 0;
    ds_message(s, s->rx, s->rx_len, s->rx_binary);
    if (s->rx_cap > (1u << 20) && s->rx_len < s->rx_cap / 4) {
        free(s->rx); /* do not keep a huge buffer after one big message */
        s->rx = NULL;
        s->rx_cap = 0;
    }
    return 0;
}

static void ds_headers(struct ds_sess *s)
{
    /* Custom headers cannot be enumerated in lws 4.1, so these names are probed. */
    static const char *const probe[] = {
        "x-test:", "x-custom:", "x-token:", "x-api-key:", "x-request-id:", "x-tenant:", "x-trace:"};
    size_t cap = 8192, n = 0;
    char *out = malloc(cap), val[2048], uri[1024], arg[512];
    if (!out) return;
    n += (size_t)snprintf(out + n, cap - n, "{");
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *name = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        size_t nl = name ? strlen(name) : 0;
        if (nl < 2 || name[nl - 1] != ':' || name[0] == ':' ||
            lws_hdr_total_length(s->wsi, (enum lws_token_indexes)t) <= 0 ||
            lws_hdr_copy(s->wsi, val, sizeof(val), (enum lws_token_indexes)t) < 0)
            continue;
        if (cap - n < nl + 2 * strlen(val) + 16) break;
        n += (size_t)snprintf(out + n, cap - n, "%s\"", n > 1 ? "," : "");
        for (size_t i = 0; i + 1 < nl; i++)
            out[n++] = (char)tolower((unsigned char)name[i]);
        n += (size_t)snprintf(out + n, cap - n, "\":\"");
        for (const char *c = val; *c; c++) {
            if (*c == '"' || *c == '\\') out[n++] = '\\';
            out[n++] = (unsigned char)*c < 0x20 ? ' ' : *c;
        }
        out[n++] = '"';
    }
    for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
        int pl = (int)strlen(probe[i]);
        if (lws_hdr_custom_length(s->wsi, probe[i], pl) < 0 ||
            lws_hdr_custom_copy(s->wsi, val, (int)sizeof(val), probe[i], pl) < 0 ||
            cap - n < 2 * strlen(val) + 64)
            continue;
        n +=
            (size_t)snprintf(out + n, cap - n, "%s\"%.*s\":\"", n > 1 ? "," : "", pl - 1, probe[i]);
        for (const char *c = val; *c; c++) {
            if (*c == '"' || *c == '\\') out[n++] = '\\';
            out[n++] = (unsigned char)*c < 0x20 ? ' ' : *c;
        }
        out[n++] = '"';
    }
    /* _path: the path plus the (already decoded) query arguments. */
    if (lws_hdr_copy(s->wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0) uri[0] = '\0';
    size_t ul = strlen(uri);
    for (int f = 0; ul + 2 < sizeof(uri); f++) {
        if (lws_hdr_copy_fragment(s->wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, f) < 0) break;
        ul += (size_t)snprintf(uri + ul, sizeof(uri) - ul, "%c%s", f ? '&' : '?', arg);
    }
    if (ul >= sizeof(uri)) ul = sizeof(uri) - 1;
    const char *proto = lws_get_protocol(s->wsi)->name;
    if (cap - n > ul * 2 + strlen(proto) + 64) {
        n += (size_t)snprintf(out + n, cap - n, "%s\"_path\":\"", n > 1 ? "," : "");
        for (size_t i = 0; i < ul; i++) {
            if (uri[i] == '"' || uri[i] == '\\') out[n++] = '\\';
            out[n++] = (unsigned char)uri[i] < 0x20 ? ' ' : uri[i];
        }
        n += (size_t)snprintf(out + n, cap - n, "\",\"_subprotocol\":\"%s\"}", proto);
        ds_send(s, DS_TEXT, out, n);
    }
    free(out);
}

static void ds_open(struct ds_sess *s, struct lws *wsi)
{
    char uri[256], reason[124];
    s->wsi = wsi;
    s->id = ++ds.next_id;
    s->next = ds.sessions;
    if (ds.sessions) ds.sessions->prev = s;
    ds.sessions = s;
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0) uri[0] = '\0';
    for (size_t i = 1; i < sizeof(ds_path_names) / sizeof(ds_path_names[0]); i++)
        if (!strcmp(uri, ds_path_names[i])) s->path = (enum ds_path)i;
    switch (s->path) {
    case P_UNKNOWN:
        ds_close_soon(s, 1008, "unknown path");
        break;
    case P_CHAT:
        s->chat_left = (int64_t)ds_arg_u64(wsi, "close_after", UINT64_MAX, INT64_MAX);
        if (s->chat_left == INT64_MAX) s->chat_left = -1;
        break;
    case P_PRICES:
        s->interval_ms = (unsigned)ds_arg_u64(wsi, "interval", 100, 3600000);
        if (!s->interval_ms) s->interval_ms = 1;
        s->price_limit = (int64_t)ds_arg_u64(wsi, "count", UINT64_MAX, INT64_MAX);
        if (s->price_limit == INT64_MAX) s->price_limit = -1;
        break;
    case P_HEADERS:
        ds_headers(s);
        break;
    case P_SUBPROTO:
        ds_send_text(s, lws_get_protocol(wsi)->name);
        break;
    case P_CLOSE: {
        uint64_t n = ds_arg_u64(wsi, "n", 0, 1u << 20);
        for (uint64_t i = 1; i <= n; i++) {
            char m[32];
            snprintf(m, sizeof(m), "m%llu", (unsigned long long)i);
            ds_send_text(s, m);
        }
        const char *r = lws_get_urlarg_by_name(wsi, "reason=", reason, (int)sizeof(reason));
        ds_send_raw_close(s, (unsigned)ds_arg_u64(wsi, "code", 1000, 65535), r ? r : "");
        break;
    }
    case P_BLAST: {
        char type[16];
        const char *t = lws_get_urlarg_by_name(wsi, "type=", type, (int)sizeof(type));
        s->blast_binary = t && !strcmp(t, "binary");
        s->blast_size = (size_t)ds_arg_u64(wsi, "size", 0, DS_MAX_MSG);
        s->blast_left = ds_arg_u64(wsi, "n", 0, UINT32_MAX);
        unsigned char hdr[10];
        size_t hl = ds_frame_header(hdr, s->blast_binary ? 2 : 1, s->blast_size);
        if (hl + s->blast_size <= DS_BATCH) {
            s->blast_frame = hl + s->blast_size;
            s->blast_buf = malloc(LWS_PRE + DS_BATCH);
            for (size_t off = 0; s->blast_buf && off + s->blast_frame <= DS_BATCH;
                 off += s->blast_frame) {
                unsigned char *f = s->blast_buf + LWS_PRE + off;
                memcpy(f, hdr, hl);
                if (s->blast_binary)
                    ds_pattern(f + hl, s->blast_size);
                else
                    memset(f + hl, 'x', s->blast_size);
            }
        } else if ((s->blast_buf = malloc(LWS_PRE + s->blast_size)) != NULL) {
            if (s->blast_binary)
                ds_pattern(s->blast_buf + LWS_PRE, s->blast_size);
            else
                memset(s->blast_buf + LWS_PRE, 'x', s->blast_size);
        }
        if (!s->blast_buf) {
            s->blast_left = 0;
            ds_close_soon(s, 1011, "out of memory");
        } else if (!s->blast_left) {
            ds_send_text(s, "END");
        } else {
            lws_callback_on_writable(wsi);
        }
        break;
    }
    case P_INVALID: {
        unsigned char f[2 + sizeof(ds_bad_utf8)];
        size_t hl = ds_frame_header(f, 1, sizeof(ds_bad_utf8));
        memcpy(f + hl, ds_bad_utf8, sizeof(ds_bad_utf8));
        ds_send_text(s, "ok");
        ds_send(s, DS_RAW, f, hl + sizeof(ds_bad_utf8));
        break;
    }
    case P_BIG: {
        size_t n = (size_t)ds_arg_u64(wsi, "size", 0, DS_MAX_MSG);
        unsigned char *b = malloc(n ? n : 1);
        if (!b) {
            ds_close_soon(s, 1011, "out of memory");
            break;
        }
        ds_pattern(b, n);
        ds_send(s, DS_BINARY, b, n);
        free(b);
        break;
    }
    case P_PING:
        ds_send(s, DS_PING, "srv", 3);
        break;
    default:
        break;
    }
}

static void ds_destroy(struct ds_sess *s)
{
    if (!s->wsi) return;
    lws_sul_cancel(&s->sul);
    if (s->prev)
        s->prev->next = s->next;
    else if (ds.sessions == s)
        ds.sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    ds_queue_free(s);
    free(s->inflight);
    free(s->rx);
    free(s->blast_buf);
    for (int i = 0; i < s->nsyms; i++)
        ds_span_free(&s->syms[i]);
    for (int i = 0; i < s->nrooms; i++)
        ds_span_free(&s->rooms[i]);
    s->wsi = NULL;
}

/*
 * Runs before lws answers an upgrade. lws 4.1 would drop the TCP connection
 * without any HTTP answer when a client offers only subprotocols we lack, so
 * we refuse those with 400 first; unknown paths get 404.
 */
/* Answers an HTTP request with a plain HTTP/1.1 status and a one-line body. */
static int ds_http_refuse(struct lws *wsi, int status, const char *text)
{
    unsigned char buf[LWS_PRE + 256];
    int n = snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, text, strlen(text) + 1, text);
    lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return 1;
}

static int ds_confirm_upgrade(struct lws *wsi, const char *what)
{
    char buf[512];
    if (!what || strcmp(what, "websocket")) return 0;
    if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_GET_URI) < 0) buf[0] = '\0';
    int known = 0;
    for (size_t i = 1; i < sizeof(ds_path_names) / sizeof(ds_path_names[0]); i++)
        known |= !strcmp(buf, ds_path_names[i]);
    if (!known) return ds_http_refuse(wsi, 404, "Not Found");
    int n = lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_PROTOCOL);
    if (n <= 0) return 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save))
        if (!strcmp(tok, "chat.v2") || !strcmp(tok, "graphql-ws")) return 0;
    return ds_http_refuse(wsi, 400, "Bad Request");
}

static int ds_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct ds_sess *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        ds_open(s, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return s->raw_closed ? 0 : ds_receive(s, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return s->raw_closed; /* nonzero: lws closes without echoing a second close */
    case LWS_CALLBACK_RECEIVE_PONG:
        if (s->path == P_PING && len <= 125 && (in || !len)) {
            char buf[140];
            int n = snprintf(buf, sizeof(buf), "pong:%.*s", (int)len, len ? (const char *)in : "");
            ds_send(s, DS_TEXT, buf, (size_t)n);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ds_writeable(s);
    case LWS_CALLBACK_CLOSED:
        ds_destroy(s);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ds_confirm_upgrade(wsi, in);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* The unnamed first entry serves clients that offer no subprotocol. */
static const struct lws_protocols ds_protocols[] = {
    {"", ds_callback, sizeof(struct ds_sess), 65536, 0, NULL, 0},
    {"chat.v2", ds_callback, sizeof(struct ds_sess), 65536, 0, NULL, 0},
    {"graphql-ws", ds_callback, sizeof(struct ds_sess), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_extension ds_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

/* Wakes the service loop during shutdown so the grace period can end. */
static void ds_stop_tick(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

static void ds_on_signal(int sig)
{
    (void)sig;
    ds.stop = 1;
    if (ds.ctx) lws_cancel_service(ds.ctx);
}

static int ds_usage(void)
{
    fprintf(stderr, "usage: broker demo-server [--port N] [--host ADDR] [--tls CERT KEY] "
                    "[--deflate] [--log LWS_LOG_BITS]\n");
    return 2;
}

int brk_demo_server_main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *cert = NULL, *key = NULL;
    long port = 0;
    int deflate = 0, log_level = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) return ds_usage();
        } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (!strcmp(argv[i], "--log") && i + 1 < argc) {
            log_level = (int)strtol(argv[++i], &end, 0);
            if (*end) return ds_usage();
        } else if (!strcmp(argv[i], "--deflate")) {
            deflate = 1;
        } else {
            return ds_usage();
        }
    }

    lws_set_log_level(log_level, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)port;
    info.iface = host;
    info.protocols = ds_protocols;
    info.extensions = deflate ? ds_extensions : NULL;
    info.pt_serv_buf_size = 65536;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    memset(&ds, 0, sizeof(ds));
    signal(SIGPIPE, SIG_IGN);
    ds.ctx = lws_create_context(&info);
    if (!ds.ctx) {
        fprintf(stderr, "demo-server: cannot start on %s:%ld\n", host, port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ds.ctx, "default");
    int bound = vh ? lws_get_vhost_listen_port(vh) : (int)port;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ds_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("LISTENING %d\n", bound);
    fflush(stdout);

    while (!ds.stop)
        if (lws_service(ds.ctx, 0) < 0) break;

    /* Going away: tell every peer 1001, give the close frames a moment, then stop. */
    for (struct ds_sess *s = ds.sessions; s; s = s->next) {
        ds_queue_free(s);
        s->blast_left = 0;
        s->closing = 0;
        ds_close_soon(s, 1001, "server shutdown");
    }
    static lws_sorted_usec_list_t stop_sul;
    lws_sul_schedule(ds.ctx, 0, &stop_sul, ds_stop_tick, 300 * LWS_US_PER_MS);
    lws_usec_t until = lws_now_usecs() + 300 * LWS_US_PER_MS;
    while (ds.sessions && lws_now_usecs() < until)
        if (lws_service(ds.ctx, 0) < 0) break;
    lws_context_destroy(ds.ctx);
    ds.ctx = NULL;
    return 0;
}

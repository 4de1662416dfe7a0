/* A hostile worker for the broker: started by the real broker in place of
 * build/worker (`broker run --worker build/bad_worker SCRIPT`), it attaches
 * the link like the real worker, sends READY, receives the script and then
 * misbehaves in the one way the script names. It is not sandboxed (it plays
 * a worker whose sandbox and runtime are fully compromised: it writes its
 * ring memory directly).
 *
 * Two modes act before READY and so cannot be named by the script: `broker
 * run --mem 7340033` never sends READY, `--mem 7340034` sends a CONNECT
 * before READY.
 *
 * The script text is "MODE BASE OUT": MODE (see `build/bad_worker list`;
 * "late_MODE" waits a second first),
 * BASE a ws://host:port of a test server (tests/hostile/ws_recorder.py), OUT
 * a file where this worker appends what it saw (its stdio is closed by the
 * broker). Connections it opens go to BASE/k/MODE (the recorder logs their
 * close code), BASE/stall/MODE (never read) or BASE/blast/MODE (floods).
 *
 * After the misbehaviour it waits a few seconds, still consuming the
 * broker's records. A broker that killed it ends the process (SIGKILL);
 * otherwise it writes "survived" to OUT, sends EXIT 0 and exits 0. Modes
 * that test load rather than a violation (log_flood, never_read, flip,
 * connect_flood, ping_flood, empty_flood) write their measurements to OUT.
 *
 * Layer: tests/tools. Uses shm/ only; no Lua, no sandbox, no libwebsockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm/proto.h"
#include "shm/ring.h"

#define MAX_CONN 64 /* connection ids tracked (id % MAX_CONN) */

/* `broker run --mem` values that select the modes acting before READY. */
#define MEM_NO_READY      7340033ull /* never send READY */
#define MEM_CONNECT_EARLY 7340034ull /* CONNECT before READY */

/* What the broker told us about one connection. */
struct cstate {
    int connected;      /* CONNECTED arrived */
    int failed;         /* CONNECT_FAIL arrived */
    int closed;         /* CLOSED arrived */
    int close_code;     /* its code */
    uint64_t msgs;      /* complete messages received */
    uint64_t bytes;     /* MSG payload bytes received */
    uint64_t tx_credit; /* TX_CREDIT bytes returned */
    char last[256];     /* last message (first bytes), NUL-terminated */
    size_t last_len;
};

/* The worker's whole state. */
struct bw {
    struct shm_link l;         /* our end of the link */
    int out;                   /* OUT file (append), -1 if none */
    char mode[64];             /* misbehaviour */
    char base[256];            /* ws://host:port */
    char *script;              /* SCRIPT payload collected (owned) */
    size_t script_len;         /* bytes collected */
    int script_done;           /* the last SCRIPT chunk arrived */
    int auto_credit;           /* answer every complete MSG with CREDIT 1 */
    int consume;               /* 0: leave the broker's records in the ring */
    uint64_t op_errors;        /* OP_ERROR records seen */
    uint64_t connect_fails;    /* CONNECT_FAIL records seen */
    int shutdown;              /* SHUTDOWN seen */
    pid_t broker;              /* --broker-pid */
    struct cstate c[MAX_CONN]; /* per connection id */
    char fail_msg[256];        /* last CONNECT_FAIL message */
};

static struct bw g = {.out = -1, .consume = 1};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends one line to OUT. */
__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
    if (g.out < 0) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    if (write(g.out, buf, (size_t)n) < 0) {
        /* nothing sensible to do */
    }
}

/* ---- reading the broker's records ---- */

static struct cstate *cs(uint32_t id)
{
    return &g.c[id % MAX_CONN];
}

static void wake_broker(void)
{
    shm_efd_signal(g.l.peer_efd);
}

static int put_raw(uint16_t type, uint16_t flags, uint32_t conn, const void *p, uint32_t n);

/* Handles every record the broker has published. */
static void pump(void)
{
    if (!g.consume) return;
    const struct shm_rec *r;
    const void *pv;
    int credits[MAX_CONN] = {0};
    while (shm_rx_peek(&g.l.rx, &r, &pv) == 1) {
        const uint8_t *p = pv;
        struct cstate *c = cs(r->conn);
        switch (r->type) {
        case PROTO_SCRIPT: {
            char *s = realloc(g.script, g.script_len + r->len + 1);
            if (s) {
                memcpy(s + g.script_len, p, r->len);
                g.script = s;
                g.script_len += r->len;
                s[g.script_len] = 0;
            }
            if (!(r->flags & PROTO_F_MORE)) g.script_done = 1;
            break;
        }
        case PROTO_CONNECTED:
            c->connected = 1;
            break;
        case PROTO_CONNECT_FAIL: {
            c->failed = 1;
            g.connect_fails++;
            struct proto_error e;
            if (r->len >= sizeof e) {
                memcpy(&e, p, sizeof e);
                size_t ml = e.msg_len < r->len - sizeof e ? e.msg_len : r->len - sizeof e;
                if (ml >= sizeof g.fail_msg) ml = sizeof g.fail_msg - 1;
                memcpy(g.fail_msg, p + sizeof e, ml);
                g.fail_msg[ml] = 0;
            }
            break;
        }
        case PROTO_MSG:
            c->bytes += r->len;
            if (c->last_len < sizeof c->last - 1) {
                size_t k = r->len < sizeof c->last - 1 - c->last_len
                               ? r->len
                               : sizeof c->last - 1 - c->last_len;
                memcpy(c->last + c->last_len, p, k);
                c->last_len += k;
                c->last[c->last_len] = 0;
            }
            if (!(r->flags & PROTO_F_MORE)) {
                c->msgs++;
                credits[r->conn % MAX_CONN]++;
            }
            break;
        case PROTO_TX_CREDIT: {
            uint64_t v = 0;
            if (r->len == 8) memcpy(&v, p, 8);
            c->tx_credit += v;
            break;
        }
        case PROTO_CLOSED: {
            struct proto_closed cl;
            c->closed = 1;
            if (r->len >= sizeof cl) {
                memcpy(&cl, p, sizeof cl);
                c->close_code = cl.code;
            }
            break;
        }
        case PROTO_OP_ERROR:
            g.op_errors++;
            break;
        case PROTO_SHUTDOWN:
            g.shutdown = 1;
            break;
        default:
            break;
        }
        shm_rx_consume(&g.l.rx);
    }
    shm_rx_release(&g.l.rx);
    if (g.auto_credit) {
        for (uint32_t i = 0; i < MAX_CONN; i++) {
            if (!credits[i]) continue;
            uint32_t n = (uint32_t)credits[i];
            put_raw(PROTO_CREDIT, 0, i, &n, 4);
        }
        shm_tx_publish(&g.l.tx);
    }
}

/* Sleeps on our eventfd for at most ms milliseconds. */
static void nap(int ms)
{
    struct pollfd pfd = {.fd = g.l.own_efd, .events = POLLIN};
    if (ms < 0) ms = 0;
    if (poll(&pfd, 1, ms) > 0) shm_efd_drain(g.l.own_efd);
}

/* Pumps records until pred() holds or ms pass; returns pred(). */
static int wait_for(int (*pred)(uint32_t), uint32_t arg, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        pump();
        if (pred && pred(arg)) return 1;
        int64_t left = end - now_ms();
        if (left <= 0) return 0;
        int r = g.consume ? shm_rx_prepare_wait(&g.l.rx) : 0;
        if (r == 0) nap(left > 50 ? 50 : (int)left);
        shm_rx_end_wait(&g.l.rx);
    }
}

/* ---- writing records ---- */

/* Writes one record without waiting (the auto-credit path). */
static int put_raw(uint16_t type, uint16_t flags, uint32_t conn, const void *p, uint32_t n)
{
    return shm_tx_write(&g.l.tx, type, flags, conn, p, n);
}

/* Writes one record, waiting (and pumping) up to 5 s for ring space.
 * Returns 0, or a negative SHM_E* code. Not published. */
static int put(uint16_t type, uint16_t flags, uint32_t conn, const void *p, uint32_t n)
{
    int64_t end = now_ms() + 5000;
    for (;;) {
        int rc = shm_tx_write(&g.l.tx, type, flags, conn, p, n);
        if (rc != SHM_EAGAIN) return rc;
        shm_tx_publish(&g.l.tx);
        if (now_ms() > end) return rc;
        int w = shm_tx_prepare_wait(&g.l.tx, n);
        if (w < 0) return w;
        if (w == 0) {
            pump();
            nap(20);
        }
        shm_tx_end_wait(&g.l.tx);
    }
}

static void publish(void)
{
    shm_tx_publish(&g.l.tx);
    wake_broker();
}

static void send_log(const char *s, int err)
{
    put(PROTO_LOG, err ? PROTO_F_STDERR : 0, 0, s, (uint32_t)strlen(s));
}

/* ---- connections ---- */

static int is_settled(uint32_t id)
{
    return cs(id)->connected || cs(id)->failed || cs(id)->closed;
}

static int is_closed(uint32_t id)
{
    return cs(id)->closed;
}

/* Sends a CONNECT for BASE + path with the given id (no wait). */
static void send_connect(uint32_t id, const char *path)
{
    char url[512];
    int ul = snprintf(url, sizeof url, "%s%s", g.base, path);
    struct proto_connect pc;
    memset(&pc, 0, sizeof pc);
    pc.channel_capacity = 16;
    pc.url_len = (uint16_t)ul;
    uint8_t buf[sizeof pc + sizeof url];
    memcpy(buf, &pc, sizeof pc);
    memcpy(buf + sizeof pc, url, (size_t)ul);
    memset(cs(id), 0, sizeof *cs(id));
    put(PROTO_CONNECT, 0, id, buf, (uint32_t)(sizeof pc + (size_t)ul));
}

/* Opens connection id to BASE + path and waits for the outcome. */
static int open_conn(uint32_t id, const char *path)
{
    send_connect(id, path);
    publish();
    if (!wait_for(is_settled, id, 5000)) {
        report("connect %u: no answer", id);
        return -1;
    }
    if (!cs(id)->connected) {
        report("connect %u failed: %s", id, g.fail_msg);
        return -1;
    }
    report("connected %u", id);
    return 0;
}

/* One whole message (BEGIN + data, one record). */
static int send_msg(uint32_t id, int binary, const void *p, uint32_t n)
{
    uint8_t buf[8 + 4096];
    uint64_t total = n;
    if (n > 4096) return -1;
    memcpy(buf, &total, 8);
    memcpy(buf + 8, p, n);
    return put(PROTO_SEND, PROTO_F_BEGIN | (binary ? PROTO_F_BINARY : 0), id, buf, 8 + n);
}

static void send_close(uint32_t id, uint16_t code, const char *reason)
{
    struct proto_close pc = {.code = code, .reason_len = (uint16_t)strlen(reason)};
    uint8_t buf[sizeof pc + 128];
    memcpy(buf, &pc, sizeof pc);
    memcpy(buf + sizeof pc, reason, pc.reason_len);
    put(PROTO_CLOSE, 0, id, buf, (uint32_t)sizeof pc + pc.reason_len);
}

/* Path of the tracked connection for this mode. */
static const char *kpath(char *buf, size_t cap, const char *kind)
{
    snprintf(buf, cap, "/%s/%s", kind, g.mode);
    return buf;
}

static int open_tracked(uint32_t id)
{
    char p[128];
    return open_conn(id, kpath(p, sizeof p, "k"));
}

/* ---- forging ring memory ---- */

/* Writes a header at our next record position and publishes head + adv
 * (the record is never committed through the ring API). */
static void forge(uint32_t len, uint16_t type, uint16_t flags, uint32_t conn, uint32_t seq_delta,
                  uint64_t adv)
{
    struct shm_tx *tx = &g.l.tx;
    struct shm_rec h = {
        .len = len, .type = type, .flags = flags, .conn = conn, .seq = tx->seq + seq_delta};
    memcpy(tx->data + (tx->head & (tx->size - 1)), &h, sizeof h);
    atomic_store_explicit(tx->head_pub, tx->head + adv, memory_order_release);
    wake_broker();
}

static void set_head(uint64_t h)
{
    atomic_store_explicit(g.l.tx.head_pub, h, memory_order_release);
    wake_broker();
}

/* Our consumer tail of the broker's ring lives in region W (written by us). */
static void set_tail(uint64_t t)
{
    atomic_store_explicit(g.l.rx.tail_pub, t, memory_order_release);
}

/* Reads VmRSS (kB) of a process, -1 if unknown. */
static long rss_kb(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *v = strstr(buf, "VmRSS:");
    return v ? strtol(v + 6, NULL, 10) : -1;
}

/* ---- the misbehaviours ---- */

static void m_bad_len(void)
{
    forge(g.l.tx.max_payload + 1, PROTO_LOG, 0, 0, 0, 64);
}

static void m_len_past_head(void)
{
    forge(200, PROTO_LOG, 0, 0, 0, 32);
}

static void m_len_huge(void)
{
    forge(0xfffffff0u, PROTO_LOG, 0, 0, 0, 64);
}

static void m_bad_type_ring(void)
{
    forge(0, 999, 0, 0, 0, 16);
}

static void m_unknown_type(void)
{
    put(20, 0, 0, NULL, 0);
    publish();
}

static void m_b2w_type(void)
{
    put(PROTO_MSG, 0, 0, "x", 1);
    publish();
}

static void m_padding_type(void)
{
    /* type 0 where the ring has room: a padding record in the wrong place */
    forge(0, SHM_REC_PAD, 0, 0, 0, 16);
}

static void m_bad_seq(void)
{
    forge(0, PROTO_LOG, 0, 0, 5, 16);
}

static void m_head_backwards(void)
{
    send_log("one log line", 0);
    publish();
    nap(200);
    pump();
    set_head(g.l.tx.head - 8);
}

static void m_head_ahead(void)
{
    set_head(g.l.tx.head + g.l.tx.size + 64);
}

static void m_head_unaligned(void)
{
    set_head(g.l.tx.head + 3);
}

static void m_tail_backwards(void)
{
    /* First let the broker see our real tail (it re-reads it before each
     * record it handles), then move it back. */
    send_log("one log line", 0);
    publish();
    nap(200);
    pump();
    set_tail(g.l.rx.tail - 8);
    send_log("wake up", 0);
    publish();
}

static void m_tail_ahead(void)
{
    set_tail(g.l.rx.tail + (1u << 30));
    send_log("wake up", 0);
    publish();
}

static void m_ready_twice(void)
{
    put(PROTO_READY, 0, 0, "again", 5);
    publish();
}

static void m_exit_bad_status(void)
{
    struct proto_exit ex = {.status = 77};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
}

static void m_exit_short(void)
{
    put(PROTO_EXIT, 0, 0, "ab", 2);
    publish();
}

static void m_log_bad_flags(void)
{
    put(PROTO_LOG, 0x40, 0, "x", 1);
    publish();
}

static void m_log_with_conn(void)
{
    put(PROTO_LOG, 0, 3, "x", 1);
    publish();
}

static void m_connect_id0(void)
{
    if (open_tracked(1) == 0) {
        send_connect(0, "/k/other");
        publish();
    }
}

static void m_connect_reused(void)
{
    if (open_tracked(1) == 0) {
        send_connect(1, "/k/other");
        publish();
    }
}

static void m_connect_decreasing(void)
{
    if (open_tracked(5) == 0) {
        send_connect(3, "/k/other");
        publish();
    }
}

static void m_connect_max_id(void)
{
    if (open_tracked(1) == 0) {
        send_connect(UINT32_MAX, "/k/other");
        publish();
    }
}

static void m_connect_short(void)
{
    if (open_tracked(1) == 0) {
        put(PROTO_CONNECT, 0, 2, "abcd", 4);
        publish();
    }
}

static void m_connect_bad_lengths(void)
{
    if (open_tracked(1) == 0) {
        struct proto_connect pc;
        memset(&pc, 0, sizeof pc);
        pc.channel_capacity = 1;
        pc.url_len = 5000; /* more than the record holds */
        uint8_t buf[sizeof pc + 16];
        memcpy(buf, &pc, sizeof pc);
        memcpy(buf + sizeof pc, "ws://127.0.0.1/x", 16);
        put(PROTO_CONNECT, 0, 2, buf, sizeof buf);
        publish();
    }
}

static void m_connect_bad_header(void)
{
    /* headers count says 3, data has one */
    if (open_tracked(1) == 0) {
        struct proto_connect pc;
        memset(&pc, 0, sizeof pc);
        pc.channel_capacity = 1;
        pc.url_len = 4;
        pc.n_headers = 3;
        uint8_t buf[sizeof pc + 4 + 12];
        memcpy(buf, &pc, sizeof pc);
        memcpy(buf + sizeof pc, "ws:/", 4);
        uint16_t l = 2;
        memcpy(buf + sizeof pc + 4, &l, 2);
        memcpy(buf + sizeof pc + 6, "X-", 2);
        memcpy(buf + sizeof pc + 8, &l, 2);
        memcpy(buf + sizeof pc + 10, "ab", 2);
        memset(buf + sizeof pc + 12, 0xff, 4);
        put(PROTO_CONNECT, 0, 2, buf, sizeof buf);
        publish();
    }
}

static void m_connect_flags(void)
{
    if (open_tracked(1) == 0) {
        char url[300];
        snprintf(url, sizeof url, "%s/k/other", g.base);
        struct proto_connect pc;
        memset(&pc, 0, sizeof pc);
        pc.channel_capacity = 1;
        pc.url_len = (uint16_t)strlen(url);
        uint8_t buf[sizeof pc + 300];
        memcpy(buf, &pc, sizeof pc);
        memcpy(buf + sizeof pc, url, pc.url_len);
        put(PROTO_CONNECT, PROTO_F_BINARY, 2, buf, (uint32_t)sizeof pc + pc.url_len);
        publish();
    }
}

static void m_connect_before_ready(void)
{
    /* Called before READY (see main). */
    send_connect(1, "/k/other");
    publish();
}

static void m_send_unopened(void)
{
    if (open_tracked(1) == 0) {
        send_msg(7, 0, "hello", 5);
        publish();
    }
}

static void m_send_conn0(void)
{
    send_msg(0, 0, "hello", 5);
    publish();
}

static void m_send_no_begin(void)
{
    if (open_tracked(1) == 0) {
        put(PROTO_SEND, PROTO_F_MORE, 1, "abc", 3);
        publish();
    }
}

static void m_send_bad_sum(void)
{
    if (open_tracked(1) == 0) {
        uint8_t buf[8 + 10];
        uint64_t total = 100;
        memcpy(buf, &total, 8);
        memset(buf + 8, 'a', 10);
        put(PROTO_SEND, PROTO_F_BEGIN, 1, buf, sizeof buf); /* final chunk, 10 of 100 */
        publish();
    }
}

static void m_send_overrun(void)
{
    if (open_tracked(1) == 0) {
        uint8_t buf[8 + 10];
        uint64_t total = 4;
        memcpy(buf, &total, 8);
        memset(buf + 8, 'a', 10);
        put(PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE, 1, buf, sizeof buf);
        publish();
    }
}

static void m_send_begin_twice(void)
{
    if (open_tracked(1) == 0) {
        uint8_t buf[8 + 4];
        uint64_t total = 100;
        memcpy(buf, &total, 8);
        memset(buf + 8, 'a', 4);
        put(PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE, 1, buf, sizeof buf);
        put(PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE, 1, buf, sizeof buf);
        publish();
    }
}

static void m_send_too_big(void)
{
    if (open_tracked(1) == 0) {
        uint64_t total = (uint64_t)PROTO_MAX_MESSAGE + 1;
        put(PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE | PROTO_F_BINARY, 1, &total, 8);
        publish();
    }
}

static void m_send_bad_flags(void)
{
    if (open_tracked(1) == 0) {
        uint8_t buf[8 + 2] = {2, 0, 0, 0, 0, 0, 0, 0, 'o', 'k'};
        put(PROTO_SEND, PROTO_F_BEGIN | 0x100, 1, buf, sizeof buf);
        publish();
    }
}

static void m_send_bad_utf8(void)
{
    if (open_tracked(1) == 0) {
        send_msg(1, 0, "ok \xff\xfe", 5);
        publish();
    }
}

static void m_send_utf8_split(void)
{
    /* a text message that ends in the middle of a UTF-8 sequence */
    if (open_tracked(1) == 0) {
        send_msg(1, 0, "ok \xe2\x82", 5);
        publish();
    }
}

/* A text message whose large second chunk is flagged BINARY (the broker
 * passes large binary SEND payloads through without copying) and holds
 * invalid UTF-8 at its end: the message is text, so it must still be copied
 * and checked. */
static void m_send_text_as_binary(void)
{
    if (open_tracked(1) == 0) {
        static uint8_t buf[8 + 8192];
        uint64_t total = 8 + 8192;
        memcpy(buf, &total, 8);
        memcpy(buf + 8, "text ok!", 8);
        put(PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE, 1, buf, 16);
        memset(buf, 'x', 8192);
        buf[8190] = 0xed; /* a surrogate's first bytes */
        buf[8191] = 0xa0;
        put(PROTO_SEND, PROTO_F_BINARY, 1, buf, 8192);
        publish();
    }
}

/* Sends far more than the window without waiting for TX_CREDIT, to a server
 * that never reads. */
static void m_send_beyond_window(void)
{
    char p[128];
    if (open_conn(1, kpath(p, sizeof p, "stall")) != 0) return;
    uint32_t chunk = g.l.tx.max_payload;
    uint64_t total = 64ull << 20;
    uint8_t *buf = calloc(1, chunk);
    if (!buf) return;
    memcpy(buf, &total, 8);
    uint64_t sent = 0;
    int first = 1;
    while (sent < total) {
        uint32_t n = first ? chunk - 8 : chunk;
        if (n > total - sent) n = (uint32_t)(total - sent);
        uint16_t f =
            PROTO_F_BINARY | (first ? PROTO_F_BEGIN : 0) | (sent + n < total ? PROTO_F_MORE : 0);
        if (put(PROTO_SEND, f, 1, buf, first ? n + 8 : n) != 0) break;
        if (first) memset(buf, 0, 8);
        first = 0;
        sent += n;
        publish();
    }
    report("sent %llu bytes, credit %llu", (unsigned long long)sent,
           (unsigned long long)cs(1)->tx_credit);
    free(buf);
}

static void m_send_after_close(void)
{
    if (open_tracked(1) == 0) {
        send_close(1, 1000, "bye");
        send_msg(1, 0, "late", 4);
        publish();
    }
}

static void m_close_twice(void)
{
    if (open_tracked(1) == 0) {
        send_close(1, 1000, "bye");
        send_close(1, 1000, "bye");
        publish();
    }
}

static void m_close_bad_code(void)
{
    if (open_tracked(1) == 0) {
        send_close(1, 1005, "");
        publish();
    }
}

static void m_close_bad_reason(void)
{
    if (open_tracked(1) == 0) {
        struct proto_close pc = {.code = 1000, .reason_len = 50}; /* record has 3 */
        uint8_t buf[sizeof pc + 3];
        memcpy(buf, &pc, sizeof pc);
        memcpy(buf + sizeof pc, "bye", 3);
        put(PROTO_CLOSE, 0, 1, buf, sizeof buf);
        publish();
    }
}

static void m_ping_bad(void)
{
    if (open_tracked(1) == 0) {
        put(PROTO_PING, 0, 1, "abc", 3);
        publish();
    }
}

static void m_credit_beyond(void)
{
    if (open_tracked(1) == 0) {
        uint32_t n = 5;
        put(PROTO_CREDIT, 0, 1, &n, 4);
        publish();
    }
}

static void m_credit_flags(void)
{
    if (open_tracked(1) == 0) {
        uint32_t n = 0;
        put(PROTO_CREDIT, PROTO_F_MORE, 1, &n, 4);
        publish();
    }
}

static void m_after_exit(void)
{
    if (open_tracked(1) == 0) {
        struct proto_exit ex = {.status = 0};
        put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
        publish();
        nap(200);
        send_msg(1, 0, "late", 4);
        publish();
    }
}

/* LOG flood for 3 s while an echo connection keeps being used: reports the
 * worst echo round trip and the broker's memory growth. */
static void m_log_flood(void)
{
    g.auto_credit = 1;
    if (open_tracked(1) != 0) return;
    long rss0 = rss_kb(g.broker);
    char line[1024];
    memset(line, 'L', sizeof line);
    int64_t start = now_ms(), worst = 0, sent_at = 0;
    uint64_t logs = 0, echoes = 0, expect = 0;
    while (now_ms() - start < 3000) {
        for (int i = 0; i < 64; i++) {
            put(PROTO_LOG, 0, 0, line, sizeof line);
            logs++;
        }
        publish();
        pump();
        if (cs(1)->msgs == expect) {
            if (sent_at) {
                int64_t rtt = now_ms() - sent_at;
                if (rtt > worst) worst = rtt;
                echoes++;
            }
            send_msg(1, 0, "ping", 4);
            publish();
            expect++;
            sent_at = now_ms();
        } else if (now_ms() - sent_at > worst) {
            worst = now_ms() - sent_at; /* an echo still outstanding counts too */
        }
    }
    long rss1 = rss_kb(g.broker);
    report("flood logs=%llu echoes=%llu worst_rtt_ms=%lld rss_growth_kb=%ld",
           (unsigned long long)logs, (unsigned long long)echoes, (long long)worst,
           rss0 >= 0 && rss1 >= 0 ? rss1 - rss0 : -1);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

/* Opens a connection to a server that floods, then stops reading the
 * broker's ring: the broker must pause, not buffer without bound. */
static void m_never_read(void)
{
    char p[160];
    snprintf(p, sizeof p, "/blast/%s?n=400000&size=1000", g.mode);
    if (open_conn(1, p) != 0) return;
    long rss0 = rss_kb(g.broker);
    g.consume = 0;
    int64_t start = now_ms();
    long peak = rss0;
    while (now_ms() - start < 3000) {
        long r = rss_kb(g.broker);
        if (r > peak) peak = r;
        nap(100);
    }
    report("never_read rss_growth_kb=%ld", rss0 >= 0 ? peak - rss0 : -1);
    /* Let it go: read everything, then exit without EXIT (a crash). */
    g.consume = 1;
    pump();
    _exit(0);
}

/* The same with a server that floods unsolicited pongs (BASE/pongs, see
 * tests/hostile/run.sh): they must not queue without bound either. */
static void m_pong_never_read(void)
{
    if (open_conn(1, "/pongs") != 0) return;
    long rss0 = rss_kb(g.broker);
    g.consume = 0;
    int64_t start = now_ms();
    long peak = rss0;
    while (now_ms() - start < 3000) {
        long r = rss_kb(g.broker);
        if (r > peak) peak = r;
        nap(100);
    }
    report("pong_never_read rss_growth_kb=%ld", rss0 >= 0 ? peak - rss0 : -1);
    g.consume = 1;
    pump();
    _exit(0);
}

/* CONNECT flood: ids 2.. to a URL the policy denies, as fast as the ring
 * allows, for 2 s; the broker answers each with CONNECT_FAIL. */
static void m_connect_flood(void)
{
    if (open_tracked(1) != 0) return;
    long rss0 = rss_kb(g.broker);
    int64_t start = now_ms();
    uint32_t id = 2;
    struct proto_connect pc;
    memset(&pc, 0, sizeof pc);
    pc.channel_capacity = 1;
    const char *url = "ws://denied.invalid/";
    pc.url_len = (uint16_t)strlen(url);
    uint8_t buf[sizeof pc + 32];
    memcpy(buf, &pc, sizeof pc);
    memcpy(buf + sizeof pc, url, pc.url_len);
    while (now_ms() - start < 2000) {
        for (int i = 0; i < 256; i++)
            put(PROTO_CONNECT, 0, id++, buf, (uint32_t)sizeof pc + pc.url_len);
        publish();
        pump();
    }
    wait_for(NULL, 0, 300);
    long rss1 = rss_kb(g.broker);
    /* the tracked connection must still work */
    send_msg(1, 0, "still", 5);
    publish();
    uint64_t before = cs(1)->msgs;
    int64_t t0 = now_ms();
    while (cs(1)->msgs == before && now_ms() - t0 < 3000)
        wait_for(NULL, 0, 50);
    report("connect_flood connects=%u fails=%llu echo=%s rss_growth_kb=%ld", id - 2,
           (unsigned long long)g.connect_fails, cs(1)->msgs > before ? "yes" : "no",
           rss0 >= 0 && rss1 >= 0 ? rss1 - rss0 : -1);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

/* Output the send window does not count, to a server that never reads
 * (BASE/stall/MODE): PING records (kind 0) or empty SEND messages (kind 1)
 * as fast as the ring takes them, for at most 8 s or until the broker closes
 * the connection. Reports the record count, the close code seen (0: none)
 * and the broker's peak memory growth. */
static void out_flood(int kind)
{
    char p[128];
    if (open_conn(1, kpath(p, sizeof p, "stall")) != 0) return;
    long rss0 = rss_kb(g.broker), peak = rss0;
    int64_t start = now_ms(), last_rss = start;
    uint64_t n = 0, token = 0;
    uint8_t empty[8] = {0}; /* u64 total length 0 */
    while (!cs(1)->closed && now_ms() - start < 8000) {
        for (int i = 0; i < 256; i++, n++) {
            int rc = kind == 0 ? put(PROTO_PING, 0, 1, &token, 8)
                               : put(PROTO_SEND, PROTO_F_BEGIN, 1, empty, 8);
            token++;
            if (rc) break;
        }
        publish();
        pump();
        if (now_ms() - last_rss >= 50) {
            long r = rss_kb(g.broker);
            if (r > peak) peak = r;
            last_rss = now_ms();
        }
    }
    wait_for(is_closed, 1, 2000);
    long r = rss_kb(g.broker);
    if (r > peak) peak = r;
    report("out_flood records=%llu closed=%d secs=%lld rss_growth_kb=%ld", (unsigned long long)n,
           cs(1)->closed ? cs(1)->close_code : 0, (long long)((now_ms() - start) / 1000),
           rss0 >= 0 && peak >= 0 ? peak - rss0 : -1);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

static void m_ping_flood(void)
{
    out_flood(0);
}

static void m_empty_flood(void)
{
    out_flood(1);
}

/* A thread flips bytes in our ring while we write valid LOG records. */
static _Atomic int flip_stop;

static void *flipper(void *arg)
{
    (void)arg;
    uint64_t x = (uint64_t)now_ms() | 1;
    while (!atomic_load(&flip_stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        volatile uint8_t *b = g.l.tx.data + (x % g.l.tx.size);
        *b ^= (uint8_t)(1u << ((x >> 33) & 7));
        if ((x & 0xff) == 0) usleep(10);
    }
    return NULL;
}

static void m_flip(void)
{
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int64_t start = now_ms();
    uint64_t n = 0;
    while (now_ms() - start < 2000) {
        send_log("flip flip flip flip flip flip flip", 0);
        n++;
        if ((n & 15) == 0) {
            publish();
            pump();
        }
    }
    atomic_store(&flip_stop, 1);
    pthread_join(t, NULL);
    report("flip logs=%llu", (unsigned long long)n);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

/* The well-behaved control: echo once, exit 0. */
static void m_good(void)
{
    g.auto_credit = 1;
    if (open_tracked(1) != 0) return;
    send_msg(1, 0, "hello", 5);
    publish();
    int64_t t0 = now_ms();
    while (cs(1)->msgs == 0 && now_ms() - t0 < 3000)
        wait_for(NULL, 0, 50);
    report("echo=%s", cs(1)->last);
    send_close(1, 1000, "done");
    publish();
    wait_for(is_closed, 1, 3000);
    report("closed %d", cs(1)->close_code);
    send_log("good worker done", 0);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

/* The well-behaved tenant next to a bad one (broker serve): echoes every
 * 50 ms for 4 s, reports the worst round trip, closes with 1000. */
static void m_good_loop(void)
{
    g.auto_credit = 1;
    if (open_tracked(1) != 0) return;
    int64_t start = now_ms(), worst = 0;
    uint64_t echoes = 0;
    while (now_ms() - start < 4000) {
        uint64_t before = cs(1)->msgs;
        int64_t t0 = now_ms();
        send_msg(1, 0, "tick", 4);
        publish();
        while (cs(1)->msgs == before && now_ms() - t0 < 3000)
            wait_for(NULL, 0, 5);
        if (cs(1)->msgs == before) break;
        echoes++;
        if (now_ms() - t0 > worst) worst = now_ms() - t0;
        wait_for(NULL, 0, 50);
    }
    send_close(1, 1000, "done");
    publish();
    wait_for(is_closed, 1, 3000);
    report("good_loop echoes=%llu worst_rtt_ms=%lld closed=%d", (unsigned long long)echoes,
           (long long)worst, cs(1)->close_code);
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    _exit(0);
}

struct mode {
    const char *name;
    void (*fn)(void);
};

static const struct mode modes[] = {
    {"good", m_good},
    {"good_loop", m_good_loop},
    {"bad_len", m_bad_len},
    {"len_past_head", m_len_past_head},
    {"len_huge", m_len_huge},
    {"bad_type_ring", m_bad_type_ring},
    {"unknown_type", m_unknown_type},
    {"b2w_type", m_b2w_type},
    {"padding_type", m_padding_type},
    {"bad_seq", m_bad_seq},
    {"head_backwards", m_head_backwards},
    {"head_ahead", m_head_ahead},
    {"head_unaligned", m_head_unaligned},
    {"tail_backwards", m_tail_backwards},
    {"tail_ahead", m_tail_ahead},
    {"ready_twice", m_ready_twice},
    {"exit_bad_status", m_exit_bad_status},
    {"exit_short", m_exit_short},
    {"log_bad_flags", m_log_bad_flags},
    {"log_with_conn", m_log_with_conn},
    {"connect_id0", m_connect_id0},
    {"connect_reused", m_connect_reused},
    {"connect_decreasing", m_connect_decreasing},
    {"connect_max_id", m_connect_max_id},
    {"connect_short", m_connect_short},
    {"connect_bad_lengths", m_connect_bad_lengths},
    {"connect_bad_header", m_connect_bad_header},
    {"connect_flags", m_connect_flags},
    {"send_unopened", m_send_unopened},
    {"send_conn0", m_send_conn0},
    {"send_no_begin", m_send_no_begin},
    {"send_bad_sum", m_send_bad_sum},
    {"send_overrun", m_send_overrun},
    {"send_begin_twice", m_send_begin_twice},
    {"send_too_big", m_send_too_big},
    {"send_bad_flags", m_send_bad_flags},
    {"send_bad_utf8", m_send_bad_utf8},
    {"send_utf8_split", m_send_utf8_split},
    {"send_text_as_binary", m_send_text_as_binary},
    {"send_beyond_window", m_send_beyond_window},
    {"send_after_close", m_send_after_close},
    {"close_twice", m_close_twice},
    {"close_bad_code", m_close_bad_code},
    {"close_bad_reason", m_close_bad_reason},
    {"ping_bad", m_ping_bad},
    {"credit_beyond", m_credit_beyond},
    {"credit_flags", m_credit_flags},
    {"after_exit", m_after_exit},
    {"log_flood", m_log_flood},
    {"never_read", m_never_read},
    {"connect_flood", m_connect_flood},
    {"flip", m_flip},
    {"ping_flood", m_ping_flood},
    {"empty_flood", m_empty_flood},
    {"pong_never_read", m_pong_never_read},
};

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            printf("%s\n", modes[i].name);
        return 0;
    }
    unsigned long long mem = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--broker-pid")) g.broker = (pid_t)atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--mem")) mem = strtoull(argv[i + 1], NULL, 10);
    }
    if (g.broker <= 0) {
        fprintf(stderr, "usage: bad_worker list (it is started by the broker: "
                        "broker run --worker build/bad_worker SCRIPT)\n");
        return 10;
    }
    alarm(30); /* whatever happens, this process ends */
    struct shm_worker_fds fds = {.region_b = 3, .region_w = 4, .efd_worker = 5, .efd_broker = 6};
    if (shm_link_attach_worker(&g.l, &fds) != 0) return 11;

    /* The mode is only known from the script, which comes after READY; the
     * two pre-READY modes are chosen by magic --mem values instead (the
     * broker passes `broker run --mem` through; the environment is empty). */
    if (mem == MEM_NO_READY) {
        sleep(25); /* the broker's READY deadline must end this */
        return 0;
    }
    if (mem == MEM_CONNECT_EARLY) {
        snprintf(g.base, sizeof g.base, "ws://127.0.0.1:9");
        m_connect_before_ready();
        wait_for(NULL, 0, 3000);
        return 0;
    }
    put(PROTO_READY, 0, 0, "bad worker: no sandbox", 22);
    publish();
    int64_t t0 = now_ms();
    while (!g.script_done && now_ms() - t0 < 5000)
        wait_for(NULL, 0, 50);
    if (!g.script_done || g.script_len < 4) return 14;
    uint32_t nl;
    memcpy(&nl, g.script, 4);
    if (nl > g.script_len - 4) return 14;
    const char *src = g.script + 4 + nl;
    char outpath[512] = "";
    if (sscanf(src, "%63s %255s %511s", g.mode, g.base, outpath) < 1) return 14;
    if (outpath[0]) g.out = open(outpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    report("mode %s", g.mode);
    /* "late_MODE": wait a second (serving the broker), then MODE. */
    const char *name = g.mode;
    if (!strncmp(name, "late_", 5)) {
        name += 5;
        wait_for(NULL, 0, 1000);
    }
    const struct mode *m = NULL;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(name, modes[i].name)) m = &modes[i];
    if (!m) {
        report("unknown mode");
        return 1;
    }
    m->fn();
    report("done");
    /* Give the broker time to kill us; still serve its records. */
    wait_for(NULL, 0, 3000);
    report("survived");
    struct proto_exit ex = {.status = 0};
    put(PROTO_EXIT, 0, 0, &ex, sizeof ex);
    publish();
    nap(100);
    return 0;
}

/* One WebSocket connection owned by a worker: the I/O shell around the
 * sans-I/O protocol core (ws.h). It resolves, checks every address against
 * the address policy, connects without blocking, runs TLS through OpenSSL,
 * moves bytes between the socket and the core, and turns the core's events
 * into records for the worker (and the worker's records into frames).
 *
 * Layer: broker/. Every worker record reaching this file was copied out of
 * the ring once; this file checks its content against the connection's state
 * (sizes, window, message framing, UTF-8, close codes) and kills the worker on
 * a violation.
 *
 * Flow control. Receiving: a message counts as undelivered from its last MSG
 * record until the worker returns a CREDIT for it; at channel_capacity
 * undelivered messages (or when the ring to the worker is full) the
 * connection stops reading its socket; the rest of the bytes already read wait
 * in a stash. Sending: the worker may have tx_window bytes of SEND payload
 * outstanding; they come back as TX_CREDIT once the socket took them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker/addr.h"
#include "broker/broker.h"
#include "broker/dns.h"
#include "broker/policy_check.h"
#include "broker/quota.h"
#include "broker/url.h"
#include "broker/utf8.h"
#include "broker/ws.h"
#include "shm/proto.h"

#define TX_WINDOW (1u << 20) /* bytes of SEND payload a worker may have outstanding */
#define OUT_HIGH  (1u << 20) /* output bytes above which sends wait for the socket */
/* Output bytes waiting for the socket above which the connection fails. The
 * send window counts payload only: frame overhead (up to 7x for 1-byte
 * messages, ~7.5 MiB at most with a full window), empty messages and pings
 * are not in it, and a server that stops reading must not let a worker grow
 * the broker's memory without bound with them. */
#define OUT_LIMIT           (16u << 20)
#define CLOSE_WAIT_MS       5000 /* bound on the close handshake */
#define DEFAULT_READ_LIMIT  (16u << 20)
#define MAX_READS_PER_EVENT 8

/* Payloads of uncompressed frames of at least DIRECT_MIN bytes are read from
 * the socket straight into a record of the worker's ring (one copy less in
 * the broker, and one record per message so the worker copies it once).
 * After such a frame the next read is only SMALL_READ bytes, so the next
 * frame's header arrives with little of its payload, and the rest can be
 * read directly again. */
#define DIRECT_MIN (16u << 10)
#define SMALL_READ 2048u

/* Queued output that is written at once rather than at the end of the round. */
#define SEND_BATCH_BYTES (64u << 10)

enum cstate {
    C_RESOLVING, /* waiting for DNS */
    C_TCP,       /* non-blocking connect in progress */
    C_TLS,       /* TLS handshake */
    C_HANDSHAKE, /* HTTP upgrade */
    C_OPEN,      /* messages flow */
    C_DONE,      /* socket gone; waiting for the outbox to drain */
};

struct brk_conn {
    struct brk_worker *w; /* owning worker */
    uint32_t id;          /* worker-chosen id */
    enum cstate st;
    char *display;     /* URL without query, for messages (owned) */
    char *host;        /* host to dial / verify (owned) */
    char *host_header; /* Host header (owned) */
    char *target;      /* request target (owned) */
    int host_is_ip;    /* 0 name, 4 or 6 literal */
    int secure;        /* wss */
    uint16_t port;
    /* options */
    uint32_t dial_ms, read_ms, write_ms;
    uint32_t capacity;              /* channel_capacity */
    uint64_t read_limit;            /* bytes after inflating */
    int compression;                /* PROTO_COMPRESSION value */
    uint32_t threshold;             /* compression threshold, bytes */
    char **hdr_names, **hdr_values; /* extra headers (owned, until the core copied them) */
    size_t n_hdrs;
    char **protocols; /* offered subprotocols (owned, until ws_new) */
    size_t n_protocols;
    /* transport */
    int fd; /* socket (owned), -1 before connect */
    struct brk_io io;
    SSL *ssl;                 /* TLS session (owned) or NULL for ws */
    int ssl_wants_write;      /* SSL_read asked for writability */
    struct ws *ws;            /* protocol core (owned) */
    int feeding;              /* > 0 while inside ws_feed (its callbacks may end us) */
    struct ws *ws_dead;       /* core dropped during ws_feed, freed when it returns */
    struct brk_dns_req *dns;  /* lookup in flight */
    struct addrinfo *addrs;   /* resolved addresses (owned) */
    struct addrinfo *next_ai; /* next one to try */
    char last_err[160];       /* why the last address failed */
    int any_allowed;          /* some resolved address passed the address policy */
    struct brk_timer dial_timer, read_timer, write_timer, close_timer;
    /* receive */
    uint8_t *stash; /* bytes read but not yet fed (owned) */
    size_t stash_len, stash_off;
    uint32_t undelivered; /* messages sent to the worker, not yet credited */
    int rx_paused;        /* not reading the socket */
    /* direct payload reads (see read_direct): an open reservation in the
     * worker's ring that the socket is read into, inside do_read only */
    int in_read;        /* do_read is running for this connection */
    uint8_t *dres;      /* payload of the open reservation, NULL if none */
    uint32_t dres_cap;  /* its length */
    uint32_t dres_fill; /* bytes in it so far */
    uint16_t dres_base; /* PROTO_F_BINARY or 0 */
    int rx_big;         /* the last data frame was large: read only a little at a frame start */
    /* send */
    uint64_t tx_taken;    /* SEND payload bytes taken from the worker */
    uint64_t tx_credited; /* of which returned as TX_CREDIT */
    uint64_t send_left;   /* bytes still due for the message in progress */
    int sending;          /* a message is in progress */
    int send_text;        /* it is text: validate UTF-8 */
    struct ws_utf8 send_utf8;
    int worker_closed;  /* the worker sent CLOSE */
    int rx_midmsg;      /* a MSG with MORE went to the worker, its end did not */
    int rx_dropping;    /* dropping a message that arrived after CLOSE, channel full */
    int closed_emitted; /* CLOSED (or CONNECT_FAIL) went to the worker */
    int finishing;      /* finish() is running (guards re-entry) */
    /* outbox of records waiting for ring space: [type u16][flags u16][len u32][payload] */
    uint8_t *ob;
    size_t ob_len, ob_off, ob_cap;
    int blocked; /* on the worker's blocked list */
    struct brk_conn *next_blocked;
    int freed;        /* free is scheduled */
    int flush_queued; /* a deferred socket write is queued (SEND batching) */
    /* serve mode (quota.h) */
    char *canonical;                    /* canonical URL the policy matched (owned) */
    int throttled;                      /* reading paused by the tenant's receive rate quota */
    struct brk_timer rx_throttle_timer; /* ends that pause */
    struct brk_timer tx_throttle_timer; /* send credits held back by the send rate quota */
    int tx_held;                        /* output kept in the broker by the send rate quotas */
};

/* worker.c */
int brk_ring_write(struct brk_worker *w, uint16_t type, uint16_t flags, uint32_t conn,
                   const void *p, uint32_t n);
void brk_worker_outbox_drained(struct brk_worker *w, size_t n);
void brk_worker_unblock(struct brk_worker *w, struct brk_conn *c);

static void conn_io(struct brk_loop *loop, struct brk_io *io, uint32_t events);
static void try_next_address(struct brk_conn *c);
static void update_interest(struct brk_conn *c);
static void flush_out(struct brk_conn *c);
static void maybe_resume(struct brk_conn *c);

uint32_t brk_conn_id(const struct brk_conn *c)
{
    return c->id;
}
const char *brk_conn_url(const struct brk_conn *c)
{
    return c->canonical;
}
struct brk_conn *brk_conn_next_blocked(struct brk_conn *c)
{
    return c->next_blocked;
}
void brk_conn_set_next_blocked(struct brk_conn *c, struct brk_conn *next)
{
    c->next_blocked = next;
}
int brk_conn_is_blocked(const struct brk_conn *c)
{
    return c->blocked;
}
void brk_conn_set_blocked(struct brk_conn *c, int on)
{
    c->blocked = on;
}

static struct brk *B(struct brk_conn *c)
{
    return c->w->b;
}

/* ---- outbox ---- */

uint32_t brk_conn_head_len(const struct brk_conn *c)
{
    uint32_t len = 0;
    if (c->ob_off < c->ob_len) memcpy(&len, c->ob + c->ob_off + 4, 4);
    return len;
}

int brk_conn_outbox_empty(const struct brk_conn *c)
{
    return c->ob_off == c->ob_len;
}

int brk_conn_outbox_add(struct brk_conn *c, uint16_t type, uint16_t flags, const void *p1,
                        uint32_t n1, const void *p2, uint32_t n2)
{
    size_t need = 8 + (size_t)n1 + n2;
    if (c->ob_off && c->ob_off == c->ob_len) c->ob_off = c->ob_len = 0;
    if (c->ob_len + need > c->ob_cap) {
        if (c->ob_off) {
            memmove(c->ob, c->ob + c->ob_off, c->ob_len - c->ob_off);
            c->ob_len -= c->ob_off;
            c->ob_off = 0;
        }
        size_t cap = c->ob_cap ? c->ob_cap : 4096;
        while (cap < c->ob_len + need)
            cap *= 2;
        if (cap != c->ob_cap) {
            uint8_t *n = realloc(c->ob, cap);
            if (!n) return -1;
            c->ob = n;
            c->ob_cap = cap;
        }
    }
    uint8_t *d = c->ob + c->ob_len;
    uint32_t len = n1 + n2;
    memcpy(d, &type, 2);
    memcpy(d + 2, &flags, 2);
    memcpy(d + 4, &len, 4);
    if (n1) memcpy(d + 8, p1, n1);
    if (n2) memcpy(d + 8 + n1, p2, n2);
    c->ob_len += need;
    return 0;
}

static void conn_free_now(void *ctx)
{
    struct brk_conn *c = ctx;
    free(c->display);
    free(c->canonical);
    free(c->host);
    free(c->host_header);
    free(c->target);
    for (size_t i = 0; i < c->n_hdrs; i++) {
        free(c->hdr_names[i]);
        free(c->hdr_values[i]);
    }
    free(c->hdr_names);
    free(c->hdr_values);
    for (size_t i = 0; i < c->n_protocols; i++)
        free(c->protocols[i]);
    free(c->protocols);
    free(c->stash);
    free(c->ob);
    free(c);
}

/* Releases the transport (socket, TLS, core, timers, lookup). */
static void drop_transport(struct brk_conn *c)
{
    struct brk_loop *loop = B(c)->loop;
    brk_timer_stop(loop, &c->dial_timer);
    brk_timer_stop(loop, &c->read_timer);
    brk_timer_stop(loop, &c->write_timer);
    brk_timer_stop(loop, &c->close_timer);
    brk_timer_stop(loop, &c->rx_throttle_timer);
    brk_timer_stop(loop, &c->tx_throttle_timer);
    if (c->dns) {
        brk_dns_cancel(B(c)->dns, c->dns);
        c->dns = NULL;
    }
    if (c->addrs) {
        freeaddrinfo(c->addrs);
        c->addrs = NULL;
    }
    if (c->fd >= 0) {
        brk_io_stop(loop, &c->io);
        if (c->ssl) {
            SSL_shutdown(c->ssl);
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
        close(c->fd);
        c->fd = -1;
    }
    if (c->ws) {
        /* ws.h: a callback must never free the core from inside ws_feed,
         * and finish() runs from on_close; feed() frees it afterwards. */
        if (c->feeding)
            c->ws_dead = c->ws;
        else
            ws_free(c->ws);
        c->ws = NULL;
    }
    c->st = C_DONE;
}

/* Removes the connection from its worker and frees it after this round. */
static void conn_release(struct brk_conn *c)
{
    if (c->freed) return;
    c->freed = 1;
    drop_transport(c);
    brk_worker_unblock(c->w, c);
    brk_worker_outbox_drained(c->w, c->ob_len - c->ob_off);
    brk_connmap_del(&c->w->conns, c->id);
    c->w->n_conns--;
    brk_q_conn_count(c->w, -1);
    brk_defer(B(c)->loop, conn_free_now, c);
}

int brk_conn_flush(struct brk_conn *c)
{
    struct brk_worker *w = c->w;
    while (c->ob_off < c->ob_len) {
        uint8_t *d = c->ob + c->ob_off;
        uint16_t type, flags;
        uint32_t len;
        memcpy(&type, d, 2);
        memcpy(&flags, d + 2, 2);
        memcpy(&len, d + 4, 4);
        if (brk_ring_write(w, type, flags, c->id, d + 8, len) < 0) return 0;
        c->ob_off += 8 + len;
        brk_worker_outbox_drained(w, 8 + len);
    }
    c->ob_off = c->ob_len = 0;
    brk_worker_publish(w);
    if (c->st == C_DONE && c->closed_emitted) {
        conn_release(c);
        return 1;
    }
    /* Resuming may refill the outbox (the ring filled up again). While we
     * run, the caller still has us on the blocked list and marked blocked,
     * so brk_emit did not queue us again: report "not empty" to stay at the
     * head, or the outbox would wait for a wake-up that never comes. */
    maybe_resume(c);
    return c->freed || brk_conn_outbox_empty(c);
}

/* ---- telling the worker ---- */

static void emit(struct brk_conn *c, uint16_t type, uint16_t flags, const void *p1, uint32_t n1,
                 const void *p2, uint32_t n2)
{
    if (brk_emit(c->w, c, type, flags, p1, n1, p2, n2) < 0)
        brk_worker_kill(c->w, BRK_WEND_KILLED, "cannot queue records (out of memory)");
}

/* Ends a connection that never opened: CONNECT_FAIL, then release. */
static void fail_connect(struct brk_conn *c, int kind, int retryable, int stage, int status,
                         const char *fmt, ...)
{
    if (c->closed_emitted) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct proto_error e = {.kind = (uint8_t)kind,
                            .retryable = (uint8_t)retryable,
                            .stage = (uint8_t)stage,
                            .op = PROTO_CONNECT,
                            .http_status = (uint16_t)status,
                            .msg_len = (uint16_t)strlen(msg)};
    drop_transport(c);
    emit(c, PROTO_CONNECT_FAIL, 0, &e, sizeof e, msg, e.msg_len);
    c->closed_emitted = 1;
    brk_worker_publish(c->w);
    if (brk_conn_outbox_empty(c)) conn_release(c);
}

/* Ends an open connection: CLOSED after every MSG, then release. */
static void finish(struct brk_conn *c, int code, int by, int kind, const char *reason,
                   size_t reason_len, const char *msg)
{
    if (c->closed_emitted || c->finishing) return;
    c->finishing = 1;
    if (reason_len > PROTO_MAX_REASON) reason_len = PROTO_MAX_REASON;
    size_t ml = msg ? strlen(msg) : 0;
    struct proto_closed cl = {.code = (uint16_t)code,
                              .by = (uint8_t)by,
                              .kind = (uint8_t)kind,
                              .reason_len = (uint16_t)reason_len,
                              .msg_len = (uint16_t)ml};
    uint8_t text[PROTO_MAX_REASON + 600];
    if (ml > 590) ml = 590, cl.msg_len = (uint16_t)ml;
    if (reason_len) memcpy(text, reason, reason_len);
    if (ml) memcpy(text + reason_len, msg, ml);
    /* Best effort: push out what the core queued (our close echo). */
    if (c->ws && c->fd >= 0) flush_out(c);
    drop_transport(c);
    emit(c, PROTO_CLOSED, 0, &cl, sizeof cl, text, (uint32_t)(reason_len + ml));
    c->closed_emitted = 1;
    brk_worker_publish(c->w);
    if (brk_conn_outbox_empty(c)) conn_release(c);
}

void brk_conn_revoke(struct brk_conn *c, int code, const char *why)
{
    if (c->freed || c->closed_emitted) return;
    if (c->st != C_OPEN || !c->ws) {
        fail_connect(c, PROTO_EK_PERMISSION_DENIED, 0, PROTO_STAGE_POLICY, 0, "dial %s: %s",
                     c->display, why);
        return;
    }
    if (ws_state(c->ws) == WS_OPEN) {
        ws_close(c->ws, code, why, strlen(why) > 123 ? 123 : strlen(why));
        flush_out(c);
        if (c->freed) return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "closed by the broker (%d): %s", code, why);
    finish(c, code, PROTO_BY_BROKER,
           code == 1013 ? PROTO_EK_RATE_LIMITED : PROTO_EK_PERMISSION_DENIED, why,
           strlen(why) > 123 ? 123 : strlen(why), msg);
    brk_worker_publish(c->w);
}

void brk_conn_abort(struct brk_conn *c, int code, const char *why)
{
    if (c->freed) return;
    if (c->ws && ws_state(c->ws) == WS_OPEN) {
        ws_close(c->ws, code, why, strlen(why));
        flush_out(c);
    }
    c->closed_emitted = 1;
    conn_release(c);
}

/* ---- socket I/O ---- */

/* Returns bytes read, 0 at EOF, -EAGAIN, or another negative errno. */
static ssize_t sock_read(struct brk_conn *c, uint8_t *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = read(c->fd, buf, n);
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        return r;
    }
    c->ssl_wants_write = 0;
    int r = SSL_read(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return -EAGAIN;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->ssl_wants_write = 1;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    ERR_clear_error();
    return -EIO;
}

static ssize_t sock_write(struct brk_conn *c, const uint8_t *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        return r;
    }
    int r = SSL_write(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -EAGAIN;
    ERR_clear_error();
    return -EIO;
}

static void on_write_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c = (struct brk_conn *)((char *)t - offsetof(struct brk_conn, write_timer));
    char msg[128];
    snprintf(msg, sizeof msg, "write timeout: the server took no data for %u ms", c->write_ms);
    finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_TIMEOUT, NULL, 0, msg);
}

static void send_credit(struct brk_conn *c);
static void flush_out(struct brk_conn *c);
static void update_interest(struct brk_conn *c);

static void on_tx_throttle_end(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c =
        (struct brk_conn *)((char *)t - offsetof(struct brk_conn, tx_throttle_timer));
    if (c->tx_held) {
        flush_out(c);
        if (!c->freed) update_interest(c);
    } else {
        send_credit(c);
    }
    brk_worker_publish(c->w);
}

static void send_credit(struct brk_conn *c)
{
    uint64_t due = c->tx_taken - c->tx_credited;
    if (!due || c->closed_emitted) return;
    int64_t hold_ms = c->st == C_OPEN ? brk_q_tx_wait(c->w) : 0;
    if (hold_ms > 0) {
        /* The tenant's send rate quota: the script waits for its window. */
        if (!brk_timer_armed(&c->tx_throttle_timer))
            brk_timer_start(B(c)->loop, &c->tx_throttle_timer, brk_now_ns() + hold_ms * 1000000,
                            on_tx_throttle_end);
        return;
    }
    size_t pending = c->ws ? ws_out_pending(c->ws) : 0;
    if (pending > OUT_HIGH / 2) return;
    if (due < TX_WINDOW / 4 && pending) return;
    c->tx_credited = c->tx_taken;
    emit(c, PROTO_TX_CREDIT, 0, &due, sizeof due, NULL, 0);
}

/* Writes what the core has queued; arms the write timeout while stuck. */
static void flush_out(struct brk_conn *c)
{
    if (!c->ws || c->fd < 0) return;
    /* The tenant's send rates: while it owes, output stays here (bounded by
     * the window and by BRK_Q_TX_DEBT_SEC); a closing handshake goes out. */
    int64_t hold_ms =
        c->st == C_OPEN && !c->worker_closed && ws_state(c->ws) == WS_OPEN && ws_out_pending(c->ws)
            ? brk_q_tx_hold(c->w)
            : 0;
    c->tx_held = hold_ms > 0;
    if (c->tx_held) {
        brk_timer_stop(B(c)->loop, &c->write_timer);
        if (!brk_timer_armed(&c->tx_throttle_timer))
            brk_timer_start(B(c)->loop, &c->tx_throttle_timer, brk_now_ns() + hold_ms * 1000000,
                            on_tx_throttle_end);
        return;
    }
    int progressed = 0;
    for (;;) {
        size_t len;
        const uint8_t *p = ws_out_peek(c->ws, &len);
        if (!len) break;
        ssize_t r = sock_write(c, p, len);
        if (r == -EAGAIN) break;
        if (r < 0) {
            if (c->st == C_OPEN)
                finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_INTERNAL, NULL, 0,
                       "connection lost while writing");
            return;
        }
        ws_out_consume(c->ws, (size_t)r);
        progressed = 1;
    }
    if (c->write_ms && c->st == C_OPEN) {
        if (!ws_out_pending(c->ws))
            brk_timer_stop(B(c)->loop, &c->write_timer);
        else if (progressed || !brk_timer_armed(&c->write_timer))
            brk_timer_start(B(c)->loop, &c->write_timer,
                            brk_now_ns() + (int64_t)c->write_ms * 1000000, on_write_timeout);
    }
    if (c->st == C_OPEN) send_credit(c);
}

static void update_interest(struct brk_conn *c)
{
    if (c->fd < 0 || c->freed) return;
    uint32_t ev = 0;
    if (c->st == C_TCP)
        ev = EPOLLOUT;
    else if (c->st == C_TLS)
        ev = c->ssl_wants_write ? EPOLLOUT : EPOLLIN;
    else {
        if (!c->rx_paused) ev |= EPOLLIN;
        if ((c->ws && ws_out_pending(c->ws) && !c->tx_held) || c->ssl_wants_write) ev |= EPOLLOUT;
    }
    brk_io_set(B(c)->loop, &c->io, ev);
}

/* ---- receiving ---- */

static void on_read_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c = (struct brk_conn *)((char *)t - offsetof(struct brk_conn, read_timer));
    char msg[128];
    snprintf(msg, sizeof msg, "read timeout: no frame from the server for %u ms", c->read_ms);
    if (c->ws && ws_state(c->ws) == WS_OPEN) ws_close(c->ws, 1001, "read timeout", 12);
    finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_TIMEOUT, NULL, 0, msg);
}

static void arm_read_timer(struct brk_conn *c)
{
    if (c->read_ms && c->st == C_OPEN && !c->rx_paused)
        brk_timer_start(B(c)->loop, &c->read_timer, brk_now_ns() + (int64_t)c->read_ms * 1000000,
                        on_read_timeout);
}

/* Keeps n bytes read but not fed (the stash is empty) for maybe_resume. */
static void stash_put(struct brk_conn *c, const uint8_t *p, size_t n)
{
    uint8_t *s = realloc(c->stash, n);
    if (!s) {
        finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_INTERNAL, NULL, 0, "out of memory");
        return;
    }
    memcpy(s, p, n);
    c->stash = s;
    c->stash_len = n;
    c->stash_off = 0;
}

/* Feeds bytes to the core; keeps what it did not take in the stash. */
static void feed(struct brk_conn *c, const uint8_t *p, size_t n, int from_stash)
{
    c->feeding++;
    ssize_t r = ws_feed(c->ws, p, n);
    if (--c->feeding == 0 && c->ws_dead) {
        ws_free(c->ws_dead);
        c->ws_dead = NULL;
    }
    if (c->freed || !c->ws) return;
    if (r < 0) return; /* on_close ran */
    size_t used = (size_t)r;
    if (from_stash) {
        c->stash_off += used;
        if (c->stash_off == c->stash_len) c->stash_off = c->stash_len = 0;
        return;
    }
    if (used < n && ws_state(c->ws) != WS_CLOSED) stash_put(c, p + used, n - used);
}

static ssize_t read_direct(struct brk_conn *c, size_t *tail);
static int dres_open(struct brk_conn *c, const uint8_t *data, size_t len, int binary);
static void dres_commit(struct brk_conn *c, int more);

static void do_read(struct brk_conn *c)
{
    struct brk *b = B(c);
    c->in_read = 1;
    for (int i = 0; i < MAX_READS_PER_EVENT && !c->rx_paused && c->ws && !c->freed; i++) {
        ssize_t r;
        size_t tail = 0;
        int op, fin, direct = 1;
        if (c->dres)
            r = read_direct(c, &tail);
        else if (c->st == C_OPEN && !c->stash_len &&
                 ws_rx_payload_left(c->ws, &op, &fin) >= DIRECT_MIN &&
                 dres_open(c, NULL, 0, op == WS_OP_BINARY))
            r = read_direct(c, &tail); /* a large frame's payload is still to come */
        else {
            direct = 0;
            r = sock_read(c, b->rdbuf, c->rx_big && c->st == C_OPEN ? SMALL_READ : b->rdbuf_len);
        }
        if (r == -EAGAIN) break;
        if (r <= 0) {
            dres_commit(c, 1);
            if (c->st == C_HANDSHAKE)
                fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_HTTP, 0,
                             "dial %s: connection closed during the WebSocket handshake",
                             c->display);
            else
                finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_INTERNAL, NULL, 0,
                       r == 0 ? "connection closed by the server without a close frame"
                              : "connection lost");
            c->in_read = 0;
            return;
        }
        arm_read_timer(c);
        if (direct) {
            /* bytes after the frame, read by the same readv: fed now, or
             * kept until reading resumes if that frame paused it (the
             * worker's channel is full) */
            if (!tail || c->freed || !c->ws) continue;
            if (c->rx_paused) {
                stash_put(c, b->rdbuf, tail);
                break;
            }
            r = (ssize_t)tail;
        }
        feed(c, b->rdbuf, (size_t)r, 0);
        if (c->stash_len) break;
    }
    /* never open across events: the worker's other connections write records */
    if (c->freed)
        c->dres = NULL;
    else
        dres_commit(c, 1);
    c->in_read = 0;
}

static void maybe_resume(struct brk_conn *c)
{
    if (!c->rx_paused || c->freed || !c->ws || c->st != C_OPEN || c->throttled) return;
    if ((c->undelivered >= c->capacity && !c->worker_closed) || !brk_conn_outbox_empty(c)) return;
    c->rx_paused = 0;
    if (c->stash_len) {
        feed(c, c->stash + c->stash_off, c->stash_len - c->stash_off, 1);
        if (c->freed || !c->ws) return;
        if (c->rx_paused) return;
    }
    /* A paused inflate may still hold output: a zero-byte feed drains it. */
    feed(c, NULL, 0, 1);
    if (c->freed || !c->ws || c->rx_paused) return;
    arm_read_timer(c);
    /* TLS may hold decrypted bytes that epoll will not report. */
    do_read(c);
    update_interest(c);
    brk_worker_publish(c->w);
}

/* ---- core callbacks ---- */

static void cb_open(void *ctx, const char *protocol, const char *extensions)
{
    struct brk_conn *c = ctx;
    c->st = C_OPEN;
    brk_timer_stop(B(c)->loop, &c->dial_timer);
    size_t pl = strlen(protocol), el = strlen(extensions);
    if (pl > 1024) pl = 1024;
    if (el > 2048) el = 2048;
    struct proto_connected cd = {
        .tx_window = TX_WINDOW, .protocol_len = (uint16_t)pl, .extensions_len = (uint16_t)el};
    char buf[3072];
    memcpy(buf, protocol, pl);
    memcpy(buf + pl, extensions, el);
    emit(c, PROTO_CONNECTED, 0, &cd, sizeof cd, buf, (uint32_t)(pl + el));
    arm_read_timer(c);
}

static void on_rx_throttle_end(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c =
        (struct brk_conn *)((char *)t - offsetof(struct brk_conn, rx_throttle_timer));
    c->throttled = 0;
    maybe_resume(c);
    brk_worker_publish(c->w); /* MSG records written while resuming */
}

/* Bookkeeping after `got` payload bytes of a message went to the worker
 * (fin: they ended it): receive quota, undelivered count, pausing. Returns 1
 * when reading must pause. */
static int rx_account(struct brk_conn *c, size_t got, int fin)
{
    if (fin) c->undelivered++;
    int64_t wait_ms = brk_q_rx(c->w, got, fin);
    if (wait_ms > 0 && !c->throttled) {
        /* The tenant's receive rate quota: stop reading for a while. */
        c->throttled = 1;
        brk_timer_start(B(c)->loop, &c->rx_throttle_timer, brk_now_ns() + wait_ms * 1000000,
                        on_rx_throttle_end);
    }
    if ((c->undelivered >= c->capacity && !c->worker_closed) || !brk_conn_outbox_empty(c) ||
        c->throttled) {
        c->rx_paused = 1;
        brk_timer_stop(B(c)->loop, &c->read_timer);
        return 1;
    }
    return 0;
}

/* After the script's close() its channel may be full and stay full: it
 * drains only what it has. Pausing would hide the server's close reply
 * behind data nobody reads and make every close wait for its timeout, so
 * whole messages arriving then are dropped instead: 1 when the message that
 * starts now is one of them. */
static int drop_starts(const struct brk_conn *c)
{
    return !c->rx_midmsg && c->worker_closed && c->undelivered >= c->capacity;
}

/* Ends the open direct reservation: what it holds becomes a MSG record
 * (more: the message goes on). An empty one that ends nothing is dropped. */
static void dres_commit(struct brk_conn *c, int more)
{
    if (!c->dres) return;
    c->dres = NULL;
    if (!c->dres_fill && more) return;
    shm_tx_commit_len(&c->w->link.tx, c->dres_fill, PROTO_MSG,
                      (uint16_t)(c->dres_base | (more ? PROTO_F_MORE : 0)), brk_conn_id(c));
}

/* Opens a reservation in the worker's ring for the rest of the current frame
 * (at most the largest record), starting with the len bytes at data. Only
 * inside do_read (nothing else writes to that ring until it is committed)
 * and with nothing queued before it. Returns 1 if it took the bytes. */
static int dres_open(struct brk_conn *c, const uint8_t *data, size_t len, int binary)
{
    int op, fin;
    uint64_t left = ws_rx_payload_left(c->ws, &op, &fin);
    uint32_t maxp = c->w->link.tx.max_payload;
    /* A message to drop (drop_starts; a frame header can arrive without
     * payload, so cb_message may not have seen this message yet) is read
     * through cb_message, which drops it. */
    if (!c->in_read || c->dres || !left || !brk_conn_outbox_empty(c) || len >= maxp ||
        len + left < DIRECT_MIN || c->w->state == BRK_W_DEAD)
        return 0;
    if (c->rx_dropping || drop_starts(c)) {
        c->rx_dropping = 1;
        return 0;
    }
    uint64_t want = len + left > maxp ? maxp : len + left;
    void *dst;
    if (shm_tx_reserve(&c->w->link.tx, (uint32_t)want, &dst) != 0) return 0;
    if (len) memcpy(dst, data, len);
    c->dres = dst;
    c->dres_cap = (uint32_t)want;
    c->dres_fill = (uint32_t)len;
    c->dres_base = binary ? PROTO_F_BINARY : 0;
    return 1;
}

static int cb_message(void *ctx, int opcode, const uint8_t *data, size_t len, int fin)
{
    struct brk_conn *c = ctx;
    if (drop_starts(c)) c->rx_dropping = 1;
    if (c->rx_dropping) {
        if (fin) c->rx_dropping = 0;
        c->rx_big = 0;
        return 0;
    }
    c->rx_midmsg = !fin;
    size_t got = len; /* for the tenant's receive quota */
    if (!fin && dres_open(c, data, len, opcode == WS_OP_BINARY)) {
        /* the frame goes on: read the rest into the same record */
        c->rx_big = 1;
        return rx_account(c, got, 0);
    }
    if (len < DIRECT_MIN) c->rx_big = 0;
    uint16_t base = opcode == WS_OP_BINARY ? PROTO_F_BINARY : 0;
    uint32_t maxp = c->w->link.tx.max_payload;
    do {
        uint32_t n = len > maxp ? maxp : (uint32_t)len;
        int last = n == len;
        uint16_t flags = base | ((last && fin) ? 0 : PROTO_F_MORE);
        if (n || last) emit(c, PROTO_MSG, flags, data, n, NULL, 0);
        data += n;
        len -= n;
    } while (len);
    return rx_account(c, got, fin);
}

/* Reads payload of the current frame into the open reservation. Returns what
 * the read returned. The reservation is committed when full or when the
 * frame ended; dropped when the core failed the connection. Without TLS,
 * when the reservation holds the whole rest of the frame, the same readv
 * also takes up to SMALL_READ bytes after it into the read buffer (the next
 * frame's header): *tail is set to their count, for the caller to feed. */
static ssize_t read_direct(struct brk_conn *c, size_t *tail)
{
    uint32_t room = c->dres_cap - c->dres_fill;
    int op, fin;
    ssize_t r;
    *tail = 0;
    if (!c->ssl && ws_rx_payload_left(c->ws, &op, &fin) == room) {
        struct iovec iov[2] = {{c->dres + c->dres_fill, room}, {B(c)->rdbuf, SMALL_READ}};
        r = readv(c->fd, iov, 2);
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        if ((size_t)r > room) {
            *tail = (size_t)r - room;
            r = room;
        }
    } else {
        r = sock_read(c, c->dres + c->dres_fill, room);
    }
    if (r <= 0) return r;
    ssize_t end = ws_rx_payload_done(c->ws, c->dres + c->dres_fill, (size_t)r);
    if (end < 0) {
        /* on_close ran, and its records went over the reservation */
        c->dres = NULL;
        *tail = 0;
        return r;
    }
    c->dres_fill += (uint32_t)r;
    if (end || c->dres_fill == c->dres_cap || !ws_rx_payload_left(c->ws, &op, &fin)) {
        dres_commit(c, !end);
        c->rx_midmsg = !end;
    }
    rx_account(c, (size_t)r, (int)end);
    return r;
}

static void cb_pong(void *ctx, const uint8_t *data, size_t len)
{
    struct brk_conn *c = ctx;
    if (len == 8) emit(c, PROTO_PONG, 0, data, 8, NULL, 0);
    /* A server may send pongs unasked, as fast as it likes: when they queue
     * for a worker that does not read its ring, stop reading the socket as
     * for messages (the rest of this read is parsed; the outbox grows by at
     * most one read buffer's worth) until the outbox drains. */
    if (!brk_conn_outbox_empty(c) && !c->rx_paused) {
        c->rx_paused = 1;
        brk_timer_stop(B(c)->loop, &c->read_timer);
    }
}

static void cb_close(void *ctx, int clean, int code, const char *reason, size_t reason_len,
                     int by_peer)
{
    struct brk_conn *c = ctx;
    if (c->st != C_OPEN) {
        int status = 0;
        const char *why = NULL;
        ws_handshake_failed(c->ws, &status, &why);
        /* The core passes its explanation as the reason too: say it once,
         * and name the HTTP status the server answered with. */
        if (why && reason_len == strlen(why) && memcmp(why, reason, reason_len) == 0)
            reason_len = 0;
        char st[40] = "";
        if (status && status != 101) snprintf(st, sizeof st, " (HTTP status %d)", status);
        fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_HTTP, status, "dial %s: %s%s%s%.*s",
                     c->display, why ? why : "WebSocket handshake failed", st,
                     reason_len ? ": " : "", (int)reason_len, reason);
        return;
    }
    int by = by_peer ? PROTO_BY_SERVER : (c->worker_closed ? PROTO_BY_CLIENT : PROTO_BY_BROKER);
    if (clean) {
        finish(c, code, by, 0, reason, reason_len, NULL);
    } else {
        /* We failed the connection (protocol error, bad UTF-8, too big):
         * report the code we sent and our explanation. */
        char msg[300];
        snprintf(msg, sizeof msg, "connection failed (%d): %.*s", code, (int)reason_len, reason);
        finish(c, code, PROTO_BY_BROKER, code == 1009 ? PROTO_EK_INVALID : PROTO_EK_INTERNAL,
               reason, reason_len, msg);
    }
}

/* ---- dialing ---- */

static void start_ws(struct brk_conn *c)
{
    struct ws_opts o = {
        .host = c->host_header,
        .path = c->target,
        .hdr_names = (const char *const *)c->hdr_names,
        .hdr_values = (const char *const *)c->hdr_values,
        .n_hdrs = c->n_hdrs,
        .protocols = (const char *const *)c->protocols,
        .n_protocols = c->n_protocols,
        .compression = c->compression,
        .compression_threshold = c->threshold,
        .read_limit = c->read_limit,
        .max_handshake = 16384,
    };
    struct ws_callbacks cb = {.ctx = c,
                              .on_open = cb_open,
                              .on_message = cb_message,
                              .on_pong = cb_pong,
                              .on_close = cb_close};
    c->ws = ws_new(&o, &cb);
    if (!c->ws) {
        fail_connect(c, PROTO_EK_INTERNAL, 0, PROTO_STAGE_HTTP, 0,
                     "dial %s: cannot build the WebSocket request", c->display);
        return;
    }
    c->st = C_HANDSHAKE;
    flush_out(c);
    update_interest(c);
}

static void tls_step(struct brk_conn *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        start_ws(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->ssl_wants_write = e == SSL_ERROR_WANT_WRITE;
        update_interest(c);
        return;
    }
    long vr = SSL_get_verify_result(c->ssl);
    char detail[256];
    if (vr != X509_V_OK)
        snprintf(detail, sizeof detail, "certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    else {
        unsigned long ec = ERR_peek_error();
        if (ec)
            ERR_error_string_n(ec, detail, sizeof detail);
        else
            snprintf(detail, sizeof detail, "TLS handshake failed");
    }
    ERR_clear_error();
    fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_TLS, 0, "dial %s: %s", c->display, detail);
}

static void start_tls(struct brk_conn *c)
{
    c->ssl = SSL_new(B(c)->tls);
    if (!c->ssl) {
        fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_TLS, 0, "dial %s: TLS setup failed",
                     c->display);
        return;
    }
    SSL_set_fd(c->ssl, c->fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (c->host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, c->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->host);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(vp, c->host, 0);
    }
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    c->st = C_TLS;
    tls_step(c);
}

static void tcp_connected(struct brk_conn *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->secure)
        start_tls(c);
    else
        start_ws(c);
}

static void conn_io(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_conn *c = (struct brk_conn *)((char *)io - offsetof(struct brk_conn, io));
    if (c->freed) return;
    switch (c->st) {
    case C_TCP: {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            snprintf(c->last_err, sizeof c->last_err, "%s", strerror(err));
            brk_io_stop(loop, &c->io);
            close(c->fd);
            c->fd = -1;
            try_next_address(c);
            return;
        }
        tcp_connected(c);
        return;
    }
    case C_TLS:
        tls_step(c);
        return;
    case C_HANDSHAKE:
    case C_OPEN:
        if (events & (EPOLLOUT)) {
            flush_out(c);
            if (c->freed || c->fd < 0) return;
        }
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->ssl_wants_write) do_read(c);
        if (!c->freed && c->fd >= 0) {
            flush_out(c);
            update_interest(c);
        }
        brk_worker_publish(c->w);
        return;
    default:
        return;
    }
}

static void try_next_address(struct brk_conn *c)
{
    while (c->next_ai) {
        struct addrinfo *ai = c->next_ai;
        c->next_ai = ai->ai_next;
        if (!c->host_is_ip) {
            unsigned flags = 0;
            enum brk_addr_class cls = brk_addr_classify(ai->ai_addr, ai->ai_addrlen, &flags);
            int ok = brk_addr_allowed(cls, brk_q_addr_mask(c->w));
            brk_q_audit_addr(c->w, c->display, ai->ai_addr, ai->ai_addrlen,
                             brk_addr_class_name(cls), ok);
            if (!ok) {
                char a[INET6_ADDRSTRLEN] = "?";
                if (ai->ai_family == AF_INET)
                    inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, a, sizeof a);
                else
                    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, a,
                              sizeof a);
                snprintf(c->last_err, sizeof c->last_err,
                         "%s resolves to %s, a %s address, which the address policy does not "
                         "allow",
                         c->host, a, brk_addr_class_name(cls));
                continue;
            }
        }
        c->any_allowed = 1;
        c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            snprintf(c->last_err, sizeof c->last_err, "socket: %s", strerror(errno));
            continue;
        }
        c->io = (struct brk_io){.fd = c->fd, .fn = conn_io};
        int r = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
        if (r == 0 || errno == EINPROGRESS) {
            c->st = C_TCP;
            if (r == 0)
                tcp_connected(c);
            else
                update_interest(c);
            return;
        }
        snprintf(c->last_err, sizeof c->last_err, "%s", strerror(errno));
        close(c->fd);
        c->fd = -1;
    }
    if (!c->any_allowed)
        fail_connect(c, PROTO_EK_PERMISSION_DENIED, 0, PROTO_STAGE_POLICY, 0, "dial %s: %s",
                     c->display, c->last_err);
    else
        fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_TCP, 0, "dial %s: %s", c->display,
                     c->last_err[0] ? c->last_err : "no address to connect to");
}

static void on_resolved(void *ctx, int gai_err, struct addrinfo *res)
{
    struct brk_conn *c = ctx;
    c->dns = NULL;
    if (gai_err) {
        fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_DNS, 0, "dial %s: cannot resolve %s: %s",
                     c->display, c->host, gai_strerror(gai_err));
        brk_worker_publish(c->w);
        return;
    }
    c->addrs = res;
    c->next_ai = res;
    c->st = C_TCP;
    try_next_address(c);
    brk_worker_publish(c->w);
}

static void on_dial_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c = (struct brk_conn *)((char *)t - offsetof(struct brk_conn, dial_timer));
    static const char *const stage_names[] = {"resolving", "connecting", "TLS handshake",
                                              "WebSocket handshake"};
    fail_connect(c, PROTO_EK_INTERNAL, 1, PROTO_STAGE_TIMEOUT, 0,
                 "dial %s: timed out after %u ms (during %s)", c->display, c->dial_ms,
                 c->st <= C_HANDSHAKE ? stage_names[c->st] : "dial");
    brk_worker_publish(c->w);
}

/* ---- CONNECT intake ---- */

/* Reads a u16-length-prefixed string; returns 0 or -1 if out of bounds. */
static int take_str(const uint8_t *p, uint32_t len, uint32_t *off, const uint8_t **s, uint16_t *n)
{
    if (len - *off < 2) return -1;
    memcpy(n, p + *off, 2);
    *off += 2;
    if (len - *off < *n) return -1;
    *s = p + *off;
    *off += *n;
    return 0;
}

static int is_token_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

static int is_token(const uint8_t *s, size_t n)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_token_char(s[i])) return 0;
    return 1;
}

static int reserved_header(const uint8_t *s, size_t n)
{
    static const char *const names[] = {"host", "upgrade", "connection", "content-length",
                                        "transfer-encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !strncasecmp((const char *)s, names[i], n)) return 1;
    return n >= 14 && !strncasecmp((const char *)s, "sec-websocket-", 14);
}

/* Sends CONNECT_FAIL for an id that has no connection object. */
static void reject(struct brk_worker *w, uint32_t id, int kind, int retryable, int stage,
                   const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct proto_error e = {.kind = (uint8_t)kind,
                            .retryable = (uint8_t)retryable,
                            .stage = (uint8_t)stage,
                            .op = PROTO_CONNECT,
                            .msg_len = (uint16_t)strlen(msg)};
    uint8_t buf[sizeof e + sizeof msg];
    memcpy(buf, &e, sizeof e);
    memcpy(buf + sizeof e, msg, e.msg_len);
    brk_ring_write(w, PROTO_CONNECT_FAIL, 0, id, buf, (uint32_t)(sizeof e + e.msg_len));
}

static char *dupn(const uint8_t *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

struct brk_conn *brk_conn_open(struct brk_worker *w, uint32_t id, const uint8_t *p, uint32_t len)
{
    struct brk *b = w->b;
    struct proto_connect pc;
    if (len < sizeof pc) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT record too short");
        return NULL;
    }
    memcpy(&pc, p, sizeof pc);
    uint32_t off = sizeof pc;
    if (pc.url_len > PROTO_MAX_URL || pc.n_headers > PROTO_MAX_HEADERS ||
        pc.n_protocols > PROTO_MAX_PROTOCOLS || len - off < pc.url_len) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT record with bad counts or lengths");
        return NULL;
    }
    const uint8_t *url = p + off;
    off += pc.url_len;
    const uint8_t *hn[PROTO_MAX_HEADERS], *hv[PROTO_MAX_HEADERS], *pr[PROTO_MAX_PROTOCOLS];
    uint16_t hnl[PROTO_MAX_HEADERS], hvl[PROTO_MAX_HEADERS], prl[PROTO_MAX_PROTOCOLS];
    for (uint16_t i = 0; i < pc.n_headers; i++) {
        if (take_str(p, len, &off, &hn[i], &hnl[i]) || take_str(p, len, &off, &hv[i], &hvl[i])) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT record: header runs past the end");
            return NULL;
        }
    }
    for (uint16_t i = 0; i < pc.n_protocols; i++) {
        if (take_str(p, len, &off, &pr[i], &prl[i])) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT record: protocol runs past the end");
            return NULL;
        }
    }
    if (off != len) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT record has trailing bytes");
        return NULL;
    }

    /* Policy first, as the contract orders it: the action, then the URL. */
    char why[600];
    if (brk_q_policy(w, "websocket.connect", "*", NULL, why, sizeof why) != 0) {
        reject(w, id, PROTO_EK_PERMISSION_DENIED, 0, PROTO_STAGE_POLICY,
               "permission denied: websocket.connect is not allowed (%s)", why);
        return NULL;
    }
    struct brk_url *u = malloc(sizeof *u);
    if (!u) {
        reject(w, id, PROTO_EK_INTERNAL, 1, PROTO_STAGE_NONE, "out of memory");
        return NULL;
    }
    char err[256];
    if (brk_url_parse((const char *)url, pc.url_len, u, err, sizeof err) != 0) {
        reject(w, id, PROTO_EK_INVALID, 0, PROTO_STAGE_OPTIONS, "invalid URL: %s", err);
        free(u);
        return NULL;
    }
    if (brk_q_policy(w, "websocket.connect.url", u->canonical, u->display, why, sizeof why) != 0) {
        reject(w, id, PROTO_EK_PERMISSION_DENIED, 0, PROTO_STAGE_POLICY,
               "permission denied: websocket.connect.url %s is not allowed (%s)", u->display, why);
        free(u);
        return NULL;
    }
    /* Option values (the worker library checks them too; a hostile worker's
     * values get the same INVALID answer). */
    const char *bad = NULL;
    if (pc.compression > 2)
        bad = "compression";
    else if (pc.compression_threshold > 100u * 1024 * 1024)
        bad = "compression_threshold";
    else if (pc.read_limit > PROTO_MAX_MESSAGE)
        bad = "read_limit";
    else if (pc.channel_capacity < 1 || pc.channel_capacity > PROTO_MAX_CHANNEL_CAPACITY)
        bad = "channel_capacity";
    for (uint16_t i = 0; !bad && i < pc.n_headers; i++) {
        if (!is_token(hn[i], hnl[i]) || reserved_header(hn[i], hnl[i]) ||
            hnl[i] + hvl[i] > PROTO_MAX_HEADER_BYTES)
            bad = "headers";
        for (uint16_t j = 0; !bad && j < hvl[i]; j++)
            if (hv[i][j] < 0x20 || hv[i][j] == 0x7f) /* CR, LF, NUL, TAB...: as ws.c */
                bad = "headers";
    }
    for (uint16_t i = 0; !bad && i < pc.n_protocols; i++)
        if (!is_token(pr[i], prl[i])) bad = "protocols";
    if (bad) {
        reject(w, id, PROTO_EK_INVALID, 0, PROTO_STAGE_OPTIONS, "invalid option %s", bad);
        free(u);
        return NULL;
    }
    if (w->n_conns >= b->cfg.max_conns) {
        reject(w, id, PROTO_EK_RATE_LIMITED, 1, PROTO_STAGE_NONE,
               "too many connections: this script may hold %u at once", b->cfg.max_conns);
        free(u);
        return NULL;
    }
    int qkind, qretry;
    if (brk_q_connect_admit(w, &pc, u->display, &qkind, &qretry, why, sizeof why) != 0) {
        reject(w, id, qkind, qretry,
               qkind == PROTO_EK_INVALID ? PROTO_STAGE_OPTIONS : PROTO_STAGE_NONE, "%s", why);
        free(u);
        return NULL;
    }

    struct brk_conn *c = calloc(1, sizeof *c);
    if (!c) {
        reject(w, id, PROTO_EK_INTERNAL, 1, PROTO_STAGE_NONE, "out of memory");
        free(u);
        return NULL;
    }
    c->w = w;
    c->id = id;
    c->fd = -1;
    c->display = strdup(u->display);
    c->canonical = strdup(u->canonical);
    c->host = strdup(u->host);
    c->host_header = strdup(u->host_header);
    c->target = strdup(u->target);
    c->host_is_ip = u->host_is_ip;
    c->secure = u->secure;
    c->port = u->port;
    free(u);
    c->dial_ms = pc.dial_timeout_ms;
    c->read_ms = pc.read_timeout_ms;
    c->write_ms = pc.write_timeout_ms;
    c->capacity = pc.channel_capacity;
    c->read_limit = pc.read_limit ? pc.read_limit : brk_q_default_read_limit(w, DEFAULT_READ_LIMIT);
    c->compression = pc.compression;
    c->threshold =
        pc.compression_threshold ? pc.compression_threshold : (pc.compression == 2 ? 512 : 128);
    c->n_hdrs = pc.n_headers;
    c->hdr_names = calloc(pc.n_headers + 1, sizeof(char *));
    c->hdr_values = calloc(pc.n_headers + 1, sizeof(char *));
    for (uint16_t i = 0; i < pc.n_headers && c->hdr_names && c->hdr_values; i++) {
        c->hdr_names[i] = dupn(hn[i], hnl[i]);
        c->hdr_values[i] = dupn(hv[i], hvl[i]);
    }
    c->n_protocols = pc.n_protocols;
    c->protocols = calloc(pc.n_protocols + 1, sizeof(char *));
    for (uint16_t i = 0; i < pc.n_protocols && c->protocols; i++)
        c->protocols[i] = dupn(pr[i], prl[i]);
    if (brk_connmap_put(&w->conns, id, c) < 0 || !c->display || !c->canonical || !c->host ||
        !c->host_header || !c->target || !c->hdr_names || !c->hdr_values || !c->protocols) {
        reject(w, id, PROTO_EK_INTERNAL, 1, PROTO_STAGE_NONE, "out of memory");
        brk_connmap_del(&w->conns, id);
        conn_free_now(c);
        return NULL;
    }
    w->n_conns++;
    brk_q_conn_count(w, 1);
    if (c->dial_ms)
        brk_timer_start(b->loop, &c->dial_timer, brk_now_ns() + (int64_t)c->dial_ms * 1000000,
                        on_dial_timeout);
    char port[8];
    snprintf(port, sizeof port, "%u", c->port);
    if (c->host_is_ip) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        int ge = getaddrinfo(c->host, port, &hints, &res);
        on_resolved(c, ge, res);
        return c;
    }
    c->st = C_RESOLVING;
    c->dns = brk_dns_resolve(b->dns, c->host, port, w->id, on_resolved, c);
    if (!c->dns)
        fail_connect(c, PROTO_EK_RATE_LIMITED, 1, PROTO_STAGE_DNS, 0,
                     "dial %s: too many name lookups in progress", c->display);
    return c;
}

/* ---- other worker records ---- */

/* After the worker queued output: fails the connection (1006 to the worker,
 * the socket is dropped) when more than OUT_LIMIT bytes wait for a server
 * that does not read. Returns 1 then. */
static int out_overflow(struct brk_conn *c)
{
    size_t pending = c->ws ? ws_out_pending(c->ws) : 0;
    if (pending <= OUT_LIMIT) return 0;
    char msg[200];
    snprintf(msg, sizeof msg,
             "the server is not reading: %zu bytes of output are waiting (limit %u); "
             "connection closed",
             pending, OUT_LIMIT);
    finish(c, 1006, PROTO_BY_BROKER, PROTO_EK_INTERNAL, NULL, 0, msg);
    return 1;
}

/* The deferred write of a batch of SEND records. Deferred calls run in
 * order, so a conn_release() after the queueing frees only after this ran. */
static void flush_deferred(void *ctx)
{
    struct brk_conn *c = ctx;
    c->flush_queued = 0;
    if (c->freed || !c->ws) return;
    flush_out(c);
    if (!c->freed) update_interest(c);
    brk_worker_publish(c->w);
}

void brk_conn_on_send(struct brk_conn *c, uint16_t flags, const uint8_t *p, uint32_t n, int shared)
{
    struct brk_worker *w = c->w;
    if (c->worker_closed && (flags & PROTO_F_BEGIN)) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND on connection %u after its CLOSE", c->id);
        return;
    }
    /* (Continuation chunks may follow CLOSE: another task of the script may
     * have been in the middle of a message. They are checked and dropped.) */
    if (flags & ~(PROTO_F_BEGIN | PROTO_F_MORE | PROTO_F_BINARY)) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND with unknown flags");
        return;
    }
    if (flags & PROTO_F_BEGIN) {
        uint64_t total;
        if (c->sending || n < sizeof total) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND BEGIN inside a message or too short");
            return;
        }
        memcpy(&total, p, sizeof total);
        if (total > PROTO_MAX_MESSAGE) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND of %llu bytes, over the maximum",
                            (unsigned long long)total);
            return;
        }
        p += sizeof total;
        n -= sizeof total;
        c->sending = 1;
        c->send_left = total;
        c->send_text = !(flags & PROTO_F_BINARY);
        ws_utf8_init(&c->send_utf8);
        if (c->st == C_OPEN && c->ws) ws_send_begin(c->ws, !c->send_text, total);
    } else if (!c->sending) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND continuation without a BEGIN");
        return;
    }
    if (shared && c->send_text) {
        /* a text message is checked: take its bytes out of the ring first */
        memcpy(w->rec, p, n);
        p = w->rec;
    }
    if ((uint64_t)n > c->send_left || (!(flags & PROTO_F_MORE) && n != c->send_left) ||
        ((flags & PROTO_F_MORE) && n == c->send_left)) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND chunks do not add up to the announced length");
        return;
    }
    if (c->tx_taken + n - c->tx_credited > TX_WINDOW) {
        brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND beyond the connection's window");
        return;
    }
    if (c->send_text) {
        if (ws_utf8_feed(&c->send_utf8, p, n, NULL) < 0 ||
            (!(flags & PROTO_F_MORE) && !ws_utf8_done(&c->send_utf8))) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "SEND of text that is not UTF-8");
            return;
        }
    }
    c->send_left -= n;
    if (!(flags & PROTO_F_MORE)) c->sending = 0;
    c->tx_taken += n;
    brk_q_tx(w, n, (flags & PROTO_F_BEGIN) != 0);
    char qwhy[200];
    if ((flags & PROTO_F_BEGIN) && c->st == C_OPEN && c->ws && !c->worker_closed &&
        brk_q_tx_overrun(w, c->display, qwhy, sizeof qwhy)) {
        brk_conn_revoke(c, 1013, qwhy); /* the rest of the message goes nowhere */
        return;
    }
    if (c->st == C_OPEN && c->ws && !c->worker_closed) {
        if (n) ws_send_data(c->ws, p, n);
        if (out_overflow(c)) return;
        /* Small messages are written once per intake round (one send(2) and
         * one TX_CREDIT for a whole batch), large output at once. */
        if (ws_out_pending(c->ws) < SEND_BATCH_BYTES && !c->flush_queued &&
            brk_defer(B(c)->loop, flush_deferred, c) == 0) {
            c->flush_queued = 1;
        } else if (!c->flush_queued || ws_out_pending(c->ws) >= SEND_BATCH_BYTES) {
            flush_out(c);
            if (!c->freed) update_interest(c);
        }
    } else {
        /* The connection is ending: the data goes nowhere, the window comes
         * back so the worker does not wait for it. */
        send_credit(c);
    }
}

void brk_conn_on_ping(struct brk_conn *c, const uint8_t *p, uint32_t n)
{
    if (n != 8 || c->worker_closed) {
        brk_worker_kill(c->w, BRK_WEND_VIOLATION, "malformed PING record");
        return;
    }
    if (c->st == C_OPEN && c->ws && ws_state(c->ws) == WS_OPEN) {
        ws_ping(c->ws, p, n);
        if (out_overflow(c)) return;
        flush_out(c);
        if (!c->freed) update_interest(c);
    }
}

static void on_close_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_conn *c = (struct brk_conn *)((char *)t - offsetof(struct brk_conn, close_timer));
    finish(c, 1006, PROTO_BY_CLIENT, PROTO_EK_TIMEOUT, NULL, 0,
           "the server did not answer the close handshake in time");
}

void brk_conn_on_close(struct brk_conn *c, const uint8_t *p, uint32_t n)
{
    struct proto_close pc;
    if (c->worker_closed || n < sizeof pc) {
        brk_worker_kill(c->w, BRK_WEND_VIOLATION, "malformed or repeated CLOSE record");
        return;
    }
    memcpy(&pc, p, sizeof pc);
    struct ws_utf8 u;
    ws_utf8_init(&u);
    if (pc.reason_len != n - sizeof pc || pc.reason_len > PROTO_MAX_REASON ||
        !ws_close_code_valid(pc.code) || pc.code == 1015 ||
        ws_utf8_feed(&u, p + sizeof pc, pc.reason_len, NULL) < 0 || !ws_utf8_done(&u)) {
        brk_worker_kill(c->w, BRK_WEND_VIOLATION, "CLOSE record with an invalid code or reason");
        return;
    }
    c->worker_closed = 1;
    if (c->st != C_OPEN || !c->ws) {
        if (c->st < C_OPEN)
            finish(c, 1006, PROTO_BY_CLIENT, 0, NULL, 0, "closed before the connection opened");
        return;
    }
    if (ws_state(c->ws) == WS_OPEN) {
        ws_close(c->ws, pc.code, (const char *)p + sizeof pc, pc.reason_len);
        flush_out(c);
        if (c->freed) return;
        update_interest(c);
        brk_timer_start(B(c)->loop, &c->close_timer,
                        brk_now_ns() + (int64_t)CLOSE_WAIT_MS * 1000000, on_close_timeout);
        maybe_resume(c); /* read on to the close reply even with a full channel */
    }
}

void brk_conn_on_credit(struct brk_conn *c, uint32_t n)
{
    if (n > c->undelivered) {
        brk_worker_kill(c->w, BRK_WEND_VIOLATION,
                        "CREDIT for %u messages, but only %u were delivered", n, c->undelivered);
        return;
    }
    c->undelivered -= n;
    maybe_resume(c);
}

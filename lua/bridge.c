/* The worker's end of the broker link: backend, output, script intake.
 *
 * Layer: lua/. Uses shm/ring.h and shm/proto.h for the link and lua/rt.h for
 * the runtime; must not depend on sockets, files or libwebsockets (the worker
 * runs under seccomp with none of them).
 *
 * Records from the broker are trusted (shm/proto.h): they are read in place
 * with shm_rx_peek() and handed to lua/websocket.c. Dispatch runs inside
 * lua_pcall because building messages allocates through the capped Lua
 * allocator; an error there (memory) ends the run. */
#include "lua/bridge.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "lua/websocket.h"
#include "shm/proto.h"

struct rt_bridge {
    struct rt *rt;         /* runtime this bridge serves (not owned) */
    struct shm_link *link; /* the worker's end of the link (not owned) */
    struct rt_ws *ws;      /* websocket context (a userdata owned by the Lua state);
                              NULL once the run finished */
    int dispatching;       /* > 0 while broker records are being dispatched */
    int shutdown;          /* 1 once the broker sent SHUTDOWN */
    int broken;            /* 0, or the negative code that ended the link */
    int finished;          /* 1 once the run ended (backend finish ran) */
    int fatal_logged;      /* 1 once the reason of a broken link went to stderr */
    int spin;              /* 1: the last wait ended with records within BRIDGE_SPIN_NS,
                              so the next wait polls the ring that long before sleeping */
};

/* Adaptive spinning: a wait that would sleep first polls the ring for up to
 * this long, but only while records keep arriving that soon after the worker
 * starts waiting (echo-style traffic: the answer is one network round trip
 * away). A spin that comes back empty turns spinning off until a wait is
 * again answered within this time, so an idle worker never spins and a
 * sparse one spins once per burst. Saves the eventfd wake-up (and the
 * broker's eventfd write) per message. 150 us rather than 50 us: answers to
 * 64 KiB messages take 50-90 us through broker and server, and with 50 us
 * they fell out of the window half the time (echo 64 KiB 0.62x -> 0.79x raw
 * C, 1 KiB 0.84x -> 0.99x; tests/BENCHMARKS.md). Off under a CPU budget. */
#define BRIDGE_SPIN_NS 150000

uint32_t rt_bridge_max_payload(const struct rt_bridge *b)
{
    return shm_tx_max_payload(&b->link->tx);
}

int rt_bridge_shutdown_seen(const struct rt_bridge *b)
{
    return b->shutdown;
}

/* Sleeps on the worker's eventfd until it is signalled or until deadline_ns
 * (CLOCK_MONOTONIC; -1 = no deadline). The caller armed the wants-* flags. */
static void bridge_sleep(struct rt_bridge *b, int64_t deadline_ns)
{
    struct pollfd pfd = {.fd = b->link->own_efd, .events = POLLIN};
    struct timespec ts, *tsp = NULL;
    if (deadline_ns >= 0) {
        int64_t left = deadline_ns - rt_now_ns();
        if (left < 0) left = 0;
        ts.tv_sec = (time_t)(left / 1000000000);
        ts.tv_nsec = (long)(left % 1000000000);
        tsp = &ts;
    }
    if (ppoll(&pfd, 1, tsp, NULL) > 0) shm_efd_drain(b->link->own_efd);
}

/* Polls the broker->worker ring until a record is there (returns 1) or
 * until BRIDGE_SPIN_NS after t0 or deadline_ns passed (returns 0). Yields the
 * CPU between looks: on a machine with few cores the broker and the server
 * this worker waits for may need this one (pause-only spinning measured
 * slower, with a longer tail). */
static int bridge_spin(struct rt_bridge *b, int64_t t0, int64_t deadline_ns)
{
    int64_t end = t0 + BRIDGE_SPIN_NS;
    if (deadline_ns >= 0 && deadline_ns < end) end = deadline_ns;
    for (;;) {
        const struct shm_rec *rec;
        const void *p;
        if (shm_rx_peek(&b->link->rx, &rec, &p) != 0) return 1;
        sched_yield();
        if (rt_now_ns() >= end) return 0;
    }
}

/* Consumes and drops every available record (used when nobody can run Lua:
 * after the run or before it); notes SHUTDOWN. Returns the count. */
static int bridge_discard(struct rt_bridge *b)
{
    const struct shm_rec *rec;
    const void *p;
    int n = 0, r;
    while ((r = shm_rx_peek(&b->link->rx, &rec, &p)) == 1) {
        if (rec->type == PROTO_SHUTDOWN) b->shutdown = 1;
        shm_rx_consume(&b->link->rx);
        n++;
    }
    if (r < 0) b->broken = r;
    shm_rx_release(&b->link->rx);
    return n;
}

/* Protected body of bridge_drain: [-0, +1] pushes the number of records. */
static int ldrain(lua_State *L)
{
    struct rt_bridge *b = lua_touserdata(L, 1);
    struct shm_rx *rx = &b->link->rx;
    lua_Integer n = 0;
    if (b->ws) rt_ws_dispatch_begin(b->ws, L);
    for (;;) {
        const struct shm_rec *rec;
        const void *p;
        int r = shm_rx_peek(rx, &rec, &p);
        if (r == 0) break;
        if (r < 0) {
            b->broken = r;
            break;
        }
        switch (rec->type) {
        case PROTO_SHUTDOWN:
            b->shutdown = 1;
            break;
        case PROTO_CONNECTED:
        case PROTO_CONNECT_FAIL:
        case PROTO_MSG:
        case PROTO_TX_CREDIT:
        case PROTO_PONG:
        case PROTO_CLOSED:
        case PROTO_OP_ERROR:
            if (b->ws && rt_ws_dispatch(b->ws, L, rec, p) < 0) b->broken = -1;
            break;
        default: /* SCRIPT after start, unknown: nothing to do */
            break;
        }
        shm_rx_consume(rx);
        n++;
        /* Give the broker room early: every 64 records, and every 1/16 of the
         * ring (64 records of 64 KiB would otherwise be the whole ring, and the
         * broker would wait for the end of the drain before refilling it). */
        if ((n & 63) == 0 || rx->tail - rx->released >= rx->size / 16) shm_rx_release(rx);
        if (b->shutdown || b->broken) break;
    }
    lua_pushinteger(L, n);
    return 1;
}

/* Writes the reason of a broken link to the script's stderr once (best
 * effort; the broker sees it next to EXIT). */
static void bridge_log_fatal(struct rt_bridge *b, const char *why)
{
    char line[512];
    if (b->fatal_logged || b->broken == SHM_ESYS || !why) return;
    b->fatal_logged = 1;
    int n = snprintf(line, sizeof line, "worker: broker link failed: %s\n", why);
    /* broken == -1 is a record this worker could not handle, with the ring
     * intact (ring errors are SHM_E* codes, which bridge_write never stores
     * as -1): the line can still go out, written past bridge_write's check. */
    if (n > 0 && (size_t)n < sizeof line && (!b->broken || b->broken == -1) &&
        shm_tx_write(&b->link->tx, PROTO_LOG, PROTO_F_STDERR, 0, line, (uint32_t)n) == 0)
        shm_tx_publish(&b->link->tx);
}

/* Dispatches every available record on L. Returns the number handled, or
 * negative when the run must end (SHUTDOWN, broken link, fatal error). Never
 * nests: inside a dispatch it returns 0. */
static int bridge_drain(struct rt_bridge *b, lua_State *L)
{
    if (b->dispatching) return 0;
    if (!L || !b->ws) {
        int n = bridge_discard(b);
        return b->shutdown || b->broken ? -1 : n;
    }
    if (!lua_checkstack(L, 4)) {
        b->broken = -1;
        return -1;
    }
    b->dispatching++;
    struct rt_ws *ws = b->ws;
    lua_pushcfunction(L, ldrain);
    lua_pushlightuserdata(L, b);
    int st = lua_pcall(L, 1, 1, 0);
    int n = 0;
    if (st == LUA_OK) {
        n = (int)lua_tointeger(L, -1);
    } else {
        b->broken = -1;
        const char *msg = lua_tostring(L, -1);
        char why[256];
        snprintf(why, sizeof why, "%s while handling a broker record",
                 st == LUA_ERRMEM ? "memory cap hit" : (msg ? msg : "error"));
        bridge_log_fatal(b, why);
    }
    lua_pop(L, 1);
    rt_ws_dispatch_end(ws);
    b->dispatching--;
    shm_rx_release(&b->link->rx);
    if (b->broken && b->ws) bridge_log_fatal(b, rt_ws_fatal_reason(b->ws));
    if (b->broken) bridge_log_fatal(b, shm_strerror(b->broken));
    return b->shutdown || b->broken ? -1 : n;
}

/* Waits until the ring has room for a record of `len` payload bytes or
 * something arrived, draining on L meanwhile. Returns 0 to retry, negative
 * when the link is gone. */
static int bridge_wait_space(struct rt_bridge *b, lua_State *L, uint32_t len)
{
    struct shm_tx *tx = &b->link->tx;
    struct shm_rx *rx = &b->link->rx;
    uint64_t rec =
        SHM_REC_HDR + (((uint64_t)len + SHM_REC_ALIGN - 1) & ~(uint64_t)(SHM_REC_ALIGN - 1));
    /* Twice the record: room for a padding record before it at the wrap. */
    uint64_t need = rec * 2 > tx->size ? tx->size : rec * 2;

    shm_tx_publish(tx);
    /* Without a Lua state records can only be dropped, which is right only
     * once the run is over. */
    int can_drain = !b->dispatching && (L || b->finished);
    if (can_drain) {
        int n = bridge_drain(b, L);
        if (n < 0) return -1;
        if (n > 0) return 0;
    }
    int r = shm_tx_prepare_wait(tx, (uint32_t)need);
    if (r == 1) return 0;
    if (r < 0) {
        b->broken = r;
        return r;
    }
    int rx_armed = 0;
    if (can_drain) {
        r = shm_rx_prepare_wait(rx);
        if (r < 0) {
            shm_tx_end_wait(tx);
            b->broken = r;
            return r;
        }
        if (r == 1) {
            shm_tx_end_wait(tx);
            return 0;
        }
        rx_armed = 1;
    }
    bridge_sleep(b, -1);
    shm_tx_end_wait(tx);
    if (rx_armed) shm_rx_end_wait(rx);
    return 0;
}

static int bridge_write(struct rt_bridge *b, lua_State *L, int may_wait, uint16_t type,
                        uint16_t flags, uint32_t conn, const void *a, uint32_t alen, const void *c,
                        uint32_t clen)
{
    struct shm_tx *tx = &b->link->tx;
    if (b->broken) return b->broken;
    if ((uint64_t)alen + clen > shm_tx_max_payload(tx)) return SHM_ETOOBIG;
    uint32_t total = alen + clen;
    for (;;) {
        void *dst;
        int r = shm_tx_reserve(tx, total, &dst);
        if (r == 0) {
            if (alen) memcpy(dst, a, alen);
            if (clen) memcpy((uint8_t *)dst + alen, c, clen);
            shm_tx_commit(tx, type, flags, conn);
            return 0;
        }
        if (r != SHM_EAGAIN) {
            b->broken = r;
            return r;
        }
        if (!may_wait) return SHM_EAGAIN;
        if (bridge_wait_space(b, L, total) < 0) return b->broken ? b->broken : -1;
        if (b->shutdown) return -1;
    }
}

int rt_bridge_write(struct rt_bridge *b, lua_State *L, uint16_t type, uint16_t flags, uint32_t conn,
                    const void *a, uint32_t alen, const void *c, uint32_t clen)
{
    if (b->shutdown) return -1;
    return bridge_write(b, L, 1, type, flags, conn, a, alen, c, clen);
}

void rt_bridge_publish(struct rt_bridge *b)
{
    shm_tx_publish(&b->link->tx);
}

int rt_bridge_try_write(struct rt_bridge *b, uint16_t type, uint16_t flags, uint32_t conn,
                        const void *a, uint32_t alen, const void *c, uint32_t clen)
{
    int r = bridge_write(b, NULL, 0, type, flags, conn, a, alen, c, clen);
    if (r == 0) shm_tx_publish(&b->link->tx);
    return r;
}

/* print() output: LOG records of at most one record's payload each. While the
 * run is on, a full ring is drained on the main state (print cannot pass us
 * the calling thread). */
static void bridge_output(void *ctx, int is_err, const char *s, size_t n)
{
    struct rt_bridge *b = ctx;
    uint32_t max = rt_bridge_max_payload(b);
    uint16_t flags = is_err ? PROTO_F_STDERR : 0;
    lua_State *L = b->finished ? NULL : rt_lua(b->rt);
    while (n > 0 && !b->broken) {
        uint32_t chunk = n > max ? max : (uint32_t)n;
        if (bridge_write(b, L, 1, PROTO_LOG, flags, 0, s, chunk, NULL, 0) < 0) return;
        s += chunk;
        n -= chunk;
    }
}

/* One pass without sleeping: batched writes, publication, dispatch.
 * *handled receives the number of records dispatched. */
static int bridge_service(struct rt_bridge *b, lua_State *L, int *handled)
{
    *handled = 0;
    if (b->shutdown || b->broken) return -1;
    if (b->ws && rt_ws_flush(b->ws, L) < 0) return -1;
    shm_tx_publish(&b->link->tx);
    int n = bridge_drain(b, L);
    if (n < 0) return -1;
    *handled = n;
    /* Dispatch may have queued credits (messages handed straight to waiting
     * receivers); send them without waiting. */
    if (n > 0 && b->ws && rt_ws_flush(b->ws, NULL) < 0) return -1;
    shm_tx_publish(&b->link->tx);
    return 0;
}

static int be_poll(void *ctx, lua_State *L)
{
    int handled;
    return bridge_service(ctx, L, &handled);
}

static int be_wait(void *ctx, lua_State *L, int64_t deadline_ns)
{
    struct rt_bridge *b = ctx;
    int handled;
    if (bridge_service(b, L, &handled) < 0) return -1;
    if (handled > 0) return 0;
    int64_t t0 = rt_now_ns();
    if (b->spin) {
        if (bridge_spin(b, t0, deadline_ns)) return bridge_service(b, L, &handled);
        b->spin = 0;
    }
    int r = shm_rx_prepare_wait(&b->link->rx);
    if (r < 0) {
        b->broken = r;
        return -1;
    }
    if (r == 0) {
        bridge_sleep(b, deadline_ns);
        shm_rx_end_wait(&b->link->rx);
    }
    if (bridge_service(b, L, &handled) < 0) return -1;
    /* Spinning costs CPU time; under a CPU budget it would be charged to the
     * script, so a budgeted worker always sleeps. */
    if (handled > 0 && rt_now_ns() - t0 < BRIDGE_SPIN_NS && !rt_cpu_budgeted(b->rt)) b->spin = 1;
    return 0;
}

static void be_finish(void *ctx, lua_State *L)
{
    struct rt_bridge *b = ctx;
    if (b->ws) rt_ws_finish(b->ws);
    b->ws = NULL;
    b->finished = 1;
    shm_tx_publish(&b->link->tx);
}

struct rt_bridge *rt_bridge_new(struct rt *rt, struct shm_link *link)
{
    struct rt_bridge *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->rt = rt;
    b->link = link;
    b->ws = rt_ws_new(rt_lua(rt), b);
    if (!b->ws) {
        free(b);
        return NULL;
    }
    struct rt_backend be = {.ctx = b, .poll = be_poll, .wait = be_wait, .finish = be_finish};
    rt_set_backend(rt, &be);
    rt_set_output(rt, bridge_output, b);
    rt_add_module(rt, "websocket", rt_open_websocket);
    return b;
}

void rt_bridge_free(struct rt_bridge *b)
{
    free(b);
}

int rt_bridge_send_ready(struct rt_bridge *b, const char *layers_text)
{
    size_t n = layers_text ? strlen(layers_text) : 0;
    uint32_t max = rt_bridge_max_payload(b);
    if (n > max) n = max;
    int r = bridge_write(b, NULL, 1, PROTO_READY, 0, 0, layers_text, (uint32_t)n, NULL, 0);
    shm_tx_publish(&b->link->tx);
    return r;
}

int rt_bridge_send_exit(struct rt_bridge *b, int status, const char *msg)
{
    struct proto_exit ex = {.status = status, .reserved = 0};
    size_t n = msg ? strlen(msg) : 0;
    uint32_t max = rt_bridge_max_payload(b) - (uint32_t)sizeof ex;
    if (n > max) n = max;
    b->finished = 1;
    b->ws = NULL;
    /* -1: a record this worker could not handle ended the run; the ring is
     * intact (see bridge_log_fatal), so the broker still learns how. */
    if (b->broken == -1) b->broken = 0;
    int r = bridge_write(b, NULL, 1, PROTO_EXIT, 0, 0, &ex, sizeof ex, msg, (uint32_t)n);
    shm_tx_publish(&b->link->tx);
    return r;
}

/* Appends n bytes to a growing malloc'd buffer. */
static int buf_append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

int rt_bridge_wait_script(struct rt_bridge *b, char **name, char **src, size_t *len)
{
    struct shm_rx *rx = &b->link->rx;
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    int done = 0;
    *name = *src = NULL;
    *len = 0;
    shm_tx_publish(&b->link->tx);
    while (!done) {
        const struct shm_rec *rec;
        const void *p;
        int r = 0;
        while (!done && (r = shm_rx_peek(rx, &rec, &p)) == 1) {
            if (rec->type == PROTO_SHUTDOWN) {
                b->shutdown = 1;
                shm_rx_consume(rx);
                shm_rx_release(rx);
                free(buf);
                return -1;
            }
            if (rec->type == PROTO_SCRIPT) {
                if (buf_append(&buf, &blen, &bcap, p, rec->len) < 0) {
                    free(buf);
                    return -1;
                }
                done = !(rec->flags & PROTO_F_MORE);
            }
            shm_rx_consume(rx);
        }
        shm_rx_release(rx);
        if (done) break;
        if (r < 0) {
            b->broken = r;
            free(buf);
            return r;
        }
        r = shm_rx_prepare_wait(rx);
        if (r < 0) {
            b->broken = r;
            free(buf);
            return r;
        }
        if (r == 0) {
            bridge_sleep(b, -1);
            shm_rx_end_wait(rx);
        }
    }
    uint32_t nlen;
    if (blen < sizeof nlen) goto bad;
    memcpy(&nlen, buf, sizeof nlen);
    if (nlen > blen - sizeof nlen) goto bad;
    size_t slen = blen - sizeof nlen - nlen;
    *name = malloc((size_t)nlen + 1);
    *src = malloc(slen + 1);
    if (!*name || !*src) {
        free(*name);
        free(*src);
        *name = *src = NULL;
        goto bad;
    }
    memcpy(*name, buf + sizeof nlen, nlen);
    (*name)[nlen] = '\0';
    memcpy(*src, buf + sizeof nlen + nlen, slen);
    (*src)[slen] = '\0';
    *len = slen;
    free(buf);
    return 0;
bad:
    free(buf);
    return -1;
}

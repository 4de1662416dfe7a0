/* The `websocket` module: script-facing client objects on top of the broker
 * link.
 *
 * Layer: lua/. Uses the runtime (rt.h: tasks, timers), channels, error
 * objects, the record protocol (shm/proto.h) and lua/bridge.h to write
 * records. No sockets, no files, no libwebsockets: the broker does the
 * network; this file only turns script calls into records and records into
 * woken tasks and channel messages.
 *
 * Model. One struct ws_conn per connection id (ids strictly increasing from
 * 1), owned by the module context (struct rt_ws, a userdata anchored in the
 * registry). A script's client object is a small userdata (struct ws_box)
 * boxing a pointer to its ws_conn. A conn is freed (deferred, at the next
 * flush: never inside a dispatch or a finalizer) once the broker can send no
 * more records for it (CLOSED or CONNECT_FAIL seen) and no client box points
 * at it.
 *
 * Blocking calls park only the calling task. Every waiting task is kept in
 * its conn's waiter list; any event on the conn wakes them all and each
 * continuation re-checks its own condition (a broadcast condition variable;
 * spurious wake-ups are harmless). Pings have their own record each.
 *
 * Decisions where the contract is silent (documented for script authors):
 * - A write_timeout that expires during send() closes the connection with
 *   CLOSE 1001 "write timeout" (a partially sent message cannot be resumed);
 *   send returns false, err TIMEOUT; later calls see a closed client.
 * - close() on a connection that already ended (server close, failure, write
 *   timeout) returns true; only a second close() by the script fails.
 * - __gc and __close of an open client send CLOSE 1001 without waiting;
 *   afterwards the client counts as closed by the script.
 * - Tx window: outstanding SEND bytes count message data only (not the u64
 *   length prefix of the first chunk).
 * - If the script itself fills the websocket channel (ch:send on it) so a
 *   received message does not fit, the run ends with an error: the broker
 *   never sends more than channel_capacity undelivered messages, so only the
 *   script can cause this. A message arriving after the script closed the
 *   channel is dropped (its credit is returned). */
#include "lua/websocket.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "lua/bridge.h"
#include "lua/channel.h"
#include "lua/errors.h"
#include "lua/rt.h"
#include "shm/proto.h"

#define WS_CTX_KEY "rt.websocket.ctx"
static const char WS_CLIENT_MT[] = "rt.websocket.client";

#define WS_DEFAULT_DIAL_MS  30000u
#define WS_DEFAULT_PING_MS  30000u
#define WS_DEFAULT_CAPACITY 32u
#define WS_MAX_THRESHOLD    (100u * 1024u * 1024u)
#define WS_MAX_READ_LIMIT   (128u * 1024u * 1024u)

enum ws_state {
    WS_CONNECTING, /* CONNECT written, waiting for CONNECTED / CONNECT_FAIL */
    WS_OPEN,       /* connected */
    WS_CLOSING,    /* we sent CLOSE (script, finalizer or write timeout) */
    WS_CLOSED,     /* CLOSED received: no more records for this id */
    WS_FAILED,     /* CONNECT_FAIL received: no more records for this id */
};

/* An error the broker reported for one operation (OP_ERROR). */
struct ws_err {
    int set;       /* 1 when this holds an error */
    int kind;      /* enum proto_err_kind */
    int retryable; /* RT_RETRY_* */
    char *msg;     /* malloc'd message (owned) */
};

/* One ping() waiting for its pong. Owned by the conn's list; freed by the
 * ping's continuation (or with the conn at the end of the state). */
struct ws_ping {
    uint64_t token;       /* sent in PING, echoed by PONG */
    struct rt_task *task; /* the task parked in ping() */
    uint64_t timer;       /* rt timer of the timeout, 0 when none/fired */
    int result;           /* 0 waiting, 1 pong, 2 timeout, 3 conn ended, 4 op error */
    struct ws_ping *next; /* next ping of the same conn */
};

struct ws_box;

struct ws_conn {
    struct rt_ws *ws;          /* owning context */
    struct ws_conn *next;      /* next conn of the context */
    uint32_t id;               /* connection id in records */
    enum ws_state state;       /* see enum ws_state */
    struct ws_box *box;        /* the client userdata, NULL before CONNECTED and after
                                  its __gc (weak: the box clears it) */
    int zombie;                /* 1: free at the next reap */
    char *url;                 /* malloc'd copy of the URL the script gave */
    uint32_t read_timeout_ms;  /* option, 0 = none */
    uint32_t write_timeout_ms; /* option, 0 = none */
    uint32_t capacity;         /* channel capacity */

    /* CONNECT_FAIL */
    int fail_kind;      /* enum proto_err_kind */
    int fail_retryable; /* RT_RETRY_* */
    int fail_stage;     /* enum proto_stage */
    int fail_status;    /* HTTP status, 0 = none */
    char *fail_msg;     /* malloc'd */

    /* CONNECTED */
    char *protocol;     /* malloc'd negotiated subprotocol ("" when none) */
    char *extensions;   /* malloc'd accepted extensions ("" when none) */
    uint64_t tx_window; /* bytes of SEND data we may have outstanding */
    uint64_t tx_used;   /* bytes written and not yet returned by TX_CREDIT */

    /* receiving */
    struct chan *ch;         /* the client's channel (anchored by ch_ref) */
    int ch_ref;              /* registry reference of the channel userdata */
    uint32_t credit_pending; /* messages taken, not yet returned as CREDIT */
    uint32_t credit_batch;   /* send CREDIT when credit_pending reaches this */
    uint8_t *rx_buf;         /* message being assembled (Lua allocator), or NULL */
    size_t rx_len;           /* bytes in rx_buf */
    size_t rx_cap;           /* allocated bytes of rx_buf */
    int rx_active;           /* 1 while a chunked message is incomplete */

    /* sending */
    struct rt_task *sender;  /* task holding the send lock, NULL when free */
    size_t send_off;         /* bytes of the current message written */
    int send_begun;          /* 1 once the BEGIN chunk is written */
    uint64_t send_timer;     /* write-timeout timer of the holder, 0 = none */
    struct ws_err send_err;  /* OP_ERROR for SEND */
    struct ws_err close_err; /* OP_ERROR for CLOSE */
    struct ws_err ping_err;  /* OP_ERROR for PING (given to failed pings) */

    struct rt_task **waiters; /* tasks waiting for any change (malloc'd array) */
    size_t n_waiters;         /* used entries */
    size_t cap_waiters;       /* allocated entries */
    struct ws_ping *pings;    /* outstanding pings */

    int script_closed;   /* 1 after close(), __close or __gc */
    int close_deferred;  /* 1: CLOSE 1001 still to be written by flush */
    int timed_out;       /* 1: we closed it after a write timeout */
    int connect_pending; /* 1 until connect() returned (it still uses the conn) */

    /* CLOSED */
    int close_code;     /* close code (1005 none, 1006 dropped) */
    int closed_by;      /* PROTO_BY_* */
    int closed_kind;    /* enum proto_err_kind of the cause */
    char *close_reason; /* malloc'd */
    char *close_msg;    /* malloc'd explanation, may be "" */
};

/* The client object (userdata, metatable WS_CLIENT_MT). */
struct ws_box {
    struct ws_conn *c; /* NULL once collected (set by __gc only) */
};

struct rt_ws {
    struct rt *rt;            /* runtime (not owned) */
    struct rt_bridge *bridge; /* link, NULL once the run finished */
    struct ws_conn *conns;    /* every conn (owned) */
    struct ws_conn *last;     /* last lookup hit (cache) */
    uint32_t next_id;         /* last connection id used */
    uint64_t next_token;      /* last ping token used */
    int dirty;                /* credits or closes waiting for flush */
    int reap;                 /* zombies waiting to be freed */
    int closing_state;        /* 1 inside the context's __gc (lua_close) */
    const char *fatal;        /* why a dispatch failed fatally (static) */
    int strs_ref;             /* registry ref: {"type", "data", "text", "binary"} */
    int strs_idx;             /* during a dispatch: stack index of the first of those four
                                 strings (pushed in order), else 0 */
};

/* ---- constants generated from shm/proto.h ---- */

static const struct {
    const char *name;
    int value;
} close_codes[] = {
#define CC_(name, val) {#name, val},
    PROTO_CLOSE_CODES(CC_)
#undef CC_
};

static const struct {
    const char *name;
    int value;
} compression_modes[] = {
#define CM_(name, val) {#name, val},
    PROTO_COMPRESSION(CM_)
#undef CM_
};

static const struct {
    const char *name;
    int value;
    const char *str;
} msg_types[] = {
#define MT_(name, val, str) {#name, val, str},
    PROTO_MSG_TYPES(MT_)
#undef MT_
};

static const char *const stage_names[] = {
#define ST_(name, str) str,
    PROTO_STAGES(ST_)
#undef ST_
};

enum { WS_TEXT = 1, WS_BINARY = 2 };

/* ---- small helpers ---- */

static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n) memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void err_clear(struct ws_err *e)
{
    free(e->msg);
    memset(e, 0, sizeof *e);
}

static void err_set(struct ws_err *e, int kind, int retryable, const char *msg, size_t n)
{
    err_clear(e);
    e->set = 1;
    e->kind = kind;
    e->retryable = retryable;
    e->msg = dup_n(msg, n);
}

/* Pushes false/nil and an error object built from e; returns 2. */
static int err_return_saved(lua_State *L, int false_first, const struct ws_err *e)
{
    if (false_first)
        lua_pushboolean(L, 0);
    else
        lua_pushnil(L);
    rt_err_push(L, e->kind, e->retryable, 0, e->msg ? e->msg : "operation failed");
    return 2;
}

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* HTTP token character (RFC 9110 tchar). */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return 0;
    return 1;
}

/* The script's URL without userinfo, query and fragment, pushed as a string.
 * Used in error details so secrets in the URL do not end up in logs. */
static void push_public_url(lua_State *L, const char *url)
{
    const char *p = strstr(url, "://");
    const char *auth = p ? p + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@') at = auth + i;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, url, (size_t)(auth - url));
    const char *host = at ? at + 1 : auth;
    luaL_addlstring(&b, host, alen - (size_t)(host - auth));
    const char *rest = auth + alen;
    luaL_addlstring(&b, rest, strcspn(rest, "?#"));
    luaL_pushresult(&b);
}

/* ---- context and conns ---- */

static struct rt_ws *ws_get(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, WS_CTX_KEY);
    struct rt_ws *ws = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ws;
}

static struct ws_conn *ws_find(struct rt_ws *ws, uint32_t id)
{
    if (ws->last && ws->last->id == id) return ws->last;
    for (struct ws_conn *c = ws->conns; c; c = c->next) {
        if (c->id == id) {
            ws->last = c;
            return c;
        }
    }
    return NULL;
}

static void wake_all(struct ws_conn *c)
{
    size_t n = c->n_waiters;
    c->n_waiters = 0;
    for (size_t i = 0; i < n; i++)
        rt_task_wake(c->ws->rt, c->waiters[i]);
}

/* Adds the current task to the conn's waiters (raises on no memory). */
static void add_waiter(lua_State *L, struct ws_conn *c)
{
    struct rt_task *t = rt_current_task(L);
    for (size_t i = 0; i < c->n_waiters; i++)
        if (c->waiters[i] == t) return;
    if (c->n_waiters == c->cap_waiters) {
        size_t nc = c->cap_waiters ? c->cap_waiters * 2 : 4;
        struct rt_task **nw = realloc(c->waiters, nc * sizeof *nw);
        if (!nw) luaL_error(L, "not enough memory");
        c->waiters = nw;
        c->cap_waiters = nc;
    }
    c->waiters[c->n_waiters++] = t;
}

static void rx_free(lua_State *L, struct ws_conn *c)
{
    if (c->rx_buf) {
        void *ud;
        lua_Alloc f = lua_getallocf(L, &ud);
        f(ud, c->rx_buf, c->rx_cap, 0);
    }
    c->rx_buf = NULL;
    c->rx_len = c->rx_cap = 0;
    c->rx_active = 0;
}

/* Releases everything a conn holds and frees it (it must be unlinked). */
static void conn_free(lua_State *L, struct ws_conn *c)
{
    struct rt_ws *ws = c->ws;
    if (!ws->closing_state) {
        if (c->send_timer) rt_timer_cancel(ws->rt, c->send_timer);
        for (struct ws_ping *p = c->pings; p; p = p->next)
            if (p->timer) rt_timer_cancel(ws->rt, p->timer);
    }
    if (c->ch_ref != LUA_NOREF && c->ch_ref != LUA_REFNIL) {
        chan_set_take_hook(c->ch, NULL, NULL);
        luaL_unref(L, LUA_REGISTRYINDEX, c->ch_ref);
    }
    rx_free(L, c);
    while (c->pings) {
        struct ws_ping *p = c->pings;
        c->pings = p->next;
        free(p);
    }
    err_clear(&c->send_err);
    err_clear(&c->close_err);
    err_clear(&c->ping_err);
    free(c->waiters);
    free(c->url);
    free(c->fail_msg);
    free(c->protocol);
    free(c->extensions);
    free(c->close_reason);
    free(c->close_msg);
    if (ws->last == c) ws->last = NULL;
    free(c);
}

/* Marks c for freeing if nothing can use it any more. */
static void conn_maybe_zombie(struct ws_conn *c)
{
    if (!c->box && !c->connect_pending && (c->state == WS_CLOSED || c->state == WS_FAILED) &&
        c->n_waiters == 0) {
        c->zombie = 1;
        c->ws->reap = 1;
    }
}

static void ws_reap(struct rt_ws *ws, lua_State *L)
{
    if (!ws->reap) return;
    ws->reap = 0;
    struct ws_conn **pp = &ws->conns;
    while (*pp) {
        struct ws_conn *c = *pp;
        if (c->zombie) {
            *pp = c->next;
            conn_free(L, c);
        } else {
            pp = &c->next;
        }
    }
}

/* Channel take hook: one credit per message taken; sent in batches. */
static void take_hook(void *ctx, struct chan *ch)
{
    struct ws_conn *c = ctx;
    if (c->state == WS_CLOSED || c->state == WS_FAILED) return;
    struct rt_ws *ws = c->ws;
    c->credit_pending++;
    ws->dirty = 1; /* the rest goes out before the worker sleeps */
    if (c->credit_pending < c->credit_batch) return;
    uint32_t n = c->credit_pending;
    if (ws->bridge &&
        rt_bridge_try_write(ws->bridge, PROTO_CREDIT, 0, c->id, &n, sizeof n, NULL, 0) == 0)
        c->credit_pending = 0;
}

/* Writes CLOSE 1001 now if the ring has room, else defers it to flush. */
static void close_nowait(struct ws_conn *c)
{
    struct rt_ws *ws = c->ws;
    c->script_closed = 1;
    if (c->state != WS_OPEN) return;
    c->state = WS_CLOSING;
    struct proto_close pc = {.code = 1001, .reason_len = 0};
    if (!ws->bridge ||
        rt_bridge_try_write(ws->bridge, PROTO_CLOSE, 0, c->id, &pc, sizeof pc, NULL, 0) != 0) {
        c->close_deferred = 1;
        ws->dirty = 1;
    }
}

int rt_ws_flush(struct rt_ws *ws, lua_State *L)
{
    if (L) ws_reap(ws, L);
    if (!ws->dirty || !ws->bridge) return 0;
    ws->dirty = 0;
    /* The list is not changed during this walk: dispatch and finalizers
     * only mark zombies; they are freed by ws_reap. */
    for (struct ws_conn *c = ws->conns; c; c = c->next) {
        if (!ws->bridge) return -1;
        if (c->close_deferred) {
            struct proto_close pc = {.code = 1001, .reason_len = 0};
            int r =
                L ? rt_bridge_write(ws->bridge, L, PROTO_CLOSE, 0, c->id, &pc, sizeof pc, NULL, 0)
                  : rt_bridge_try_write(ws->bridge, PROTO_CLOSE, 0, c->id, &pc, sizeof pc, NULL, 0);
            if (r == SHM_EAGAIN) {
                ws->dirty = 1;
                continue;
            }
            if (r < 0) return r;
            c->close_deferred = 0;
        }
        if (c->credit_pending && (c->state == WS_OPEN || c->state == WS_CLOSING)) {
            uint32_t n = c->credit_pending;
            int r =
                L ? rt_bridge_write(ws->bridge, L, PROTO_CREDIT, 0, c->id, &n, sizeof n, NULL, 0)
                  : rt_bridge_try_write(ws->bridge, PROTO_CREDIT, 0, c->id, &n, sizeof n, NULL, 0);
            if (r == SHM_EAGAIN) {
                ws->dirty = 1;
                continue;
            }
            if (r < 0) return r;
            c->credit_pending -= n;
        }
    }
    return 0;
}

void rt_ws_finish(struct rt_ws *ws)
{
    if (!ws->bridge) return;
    for (struct ws_conn *c = ws->conns; c; c = c->next) {
        if (c->state == WS_OPEN || c->close_deferred) {
            struct proto_close pc = {.code = 1001, .reason_len = 0};
            rt_bridge_try_write(ws->bridge, PROTO_CLOSE, 0, c->id, &pc, sizeof pc, NULL, 0);
            c->state = WS_CLOSING;
            c->close_deferred = 0;
        }
    }
    ws->bridge = NULL;
}

const char *rt_ws_fatal_reason(const struct rt_ws *ws)
{
    return ws->fatal;
}

static int lws_ctx_gc(lua_State *L)
{
    struct rt_ws *ws = lua_touserdata(L, 1);
    ws->closing_state = 1;
    ws->bridge = NULL;
    while (ws->conns) {
        struct ws_conn *c = ws->conns;
        ws->conns = c->next;
        if (c->box) c->box->c = NULL;
        conn_free(L, c);
    }
    return 0;
}

struct rt_ws *rt_ws_new(lua_State *L, struct rt_bridge *b)
{
    struct rt_ws *ws = lua_newuserdatauv(L, sizeof *ws, 0);
    memset(ws, 0, sizeof *ws);
    ws->rt = rt_from_lua(L);
    ws->bridge = b;
    static const char *const strs[] = {"type", "data", "text", "binary"};
    lua_createtable(L, 4, 0);
    for (int i = 0; i < 4; i++) {
        lua_pushstring(L, strs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    ws->strs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lws_ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, WS_CTX_KEY);
    return ws;
}

/* ---- records from the broker ---- */

#define RX_KEEP_BYTES (1u << 20) /* largest reassembly buffer kept between messages */

/* Pushes {type=, data=} for a message of n bytes at p. [-0, +1] Only inside
 * a dispatch: the keys and type names are on the stack there
 * (rt_ws_dispatch_begin), copied with pushvalue rather than made from C
 * strings, which Lua would look up in its string cache (hash and strcmp)
 * three times per message. */
static void push_message(struct rt_ws *ws, lua_State *L, int binary, const void *p, size_t n)
{
    int s = ws->strs_idx;
    lua_createtable(L, 0, 2); /* msg */
    lua_pushvalue(L, s);      /* msg "type" */
    lua_pushvalue(L, binary ? s + 3 : s + 2);
    lua_rawset(L, -3);
    lua_pushvalue(L, s + 1); /* msg "data" */
    lua_pushlstring(L, p, n);
    lua_rawset(L, -3);
}

void rt_ws_dispatch_begin(struct rt_ws *ws, lua_State *L)
{
    luaL_checkstack(L, 16, "dispatch");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ws->strs_ref);
    int t = lua_gettop(L);
    for (int i = 1; i <= 4; i++)
        lua_rawgeti(L, t, i);
    lua_remove(L, t);
    ws->strs_idx = lua_gettop(L) - 3;
}

void rt_ws_dispatch_end(struct rt_ws *ws)
{
    ws->strs_idx = 0;
}

/* Hands the message on top of the stack to the conn's channel (popped). */
static int deliver(struct rt_ws *ws, lua_State *L, struct ws_conn *c)
{
    int r = chan_offer(L, c->ch, -1);
    if (r == -1) {
        ws->fatal = "a received message did not fit into the connection's channel "
                    "(did the script send into it?)";
        return -1;
    }
    if (r == -2) {
        /* The script closed the channel: drop it but return its credit. */
        c->credit_pending++;
        ws->dirty = 1;
    }
    return 0;
}

static int on_msg(struct rt_ws *ws, lua_State *L, struct ws_conn *c, const struct shm_rec *rec,
                  const void *p)
{
    int binary = (rec->flags & PROTO_F_BINARY) != 0;
    int more = (rec->flags & PROTO_F_MORE) != 0;
    if (c->state != WS_OPEN && c->state != WS_CLOSING) return 0;
    if (!c->rx_active && !more) {
        push_message(ws, L, binary, p, rec->len);
        return deliver(ws, L, c);
    }
    if ((uint64_t)c->rx_len + rec->len > PROTO_MAX_MESSAGE) {
        ws->fatal = "received message larger than the protocol maximum";
        return -1;
    }
    if (c->rx_len + rec->len > c->rx_cap) {
        size_t nc = c->rx_cap ? c->rx_cap : 64 * 1024;
        while (nc < c->rx_len + rec->len)
            nc *= 2;
        void *ud;
        lua_Alloc f = lua_getallocf(L, &ud);
        void *nb = f(ud, c->rx_buf, c->rx_buf ? c->rx_cap : 0, nc);
        if (!nb) {
            /* Like Lua itself: one retry after a full collection. */
            lua_gc(L, LUA_GCCOLLECT);
            nb = f(ud, c->rx_buf, c->rx_buf ? c->rx_cap : 0, nc);
        }
        if (!nb)
            return luaL_error(L,
                              "not enough memory for a received message of more than %d "
                              "bytes (memory cap)",
                              (int)(c->rx_len + rec->len));
        c->rx_buf = nb;
        c->rx_cap = nc;
    }
    memcpy(c->rx_buf + c->rx_len, p, rec->len);
    c->rx_len += rec->len;
    c->rx_active = 1;
    if (more) return 0;
    push_message(ws, L, binary, c->rx_buf, c->rx_len);
    /* The reassembly buffer is kept for the next message up to 1 MiB (it
     * grows by doubling, and regrowing it for every large message copied
     * each message about twice more); larger ones go back to the allocator. */
    if (c->rx_cap > RX_KEEP_BYTES) rx_free(L, c);
    c->rx_len = 0;
    c->rx_active = 0;
    return deliver(ws, L, c);
}

static void fail_pings(struct ws_conn *c, int result)
{
    for (struct ws_ping *p = c->pings; p; p = p->next) {
        if (p->result == 0) {
            p->result = result;
            if (p->timer) rt_timer_cancel(c->ws->rt, p->timer);
            p->timer = 0;
            rt_task_wake(c->ws->rt, p->task);
        }
    }
}

static void on_closed(struct rt_ws *ws, lua_State *L, struct ws_conn *c, const void *p,
                      uint32_t len)
{
    struct proto_closed pc = {.code = 1006, .by = PROTO_BY_BROKER};
    const char *reason = "", *msg = "";
    size_t rlen = 0, mlen = 0;
    if (len >= sizeof pc) {
        memcpy(&pc, p, sizeof pc);
        if ((uint64_t)sizeof pc + pc.reason_len + pc.msg_len <= len) {
            reason = (const char *)p + sizeof pc;
            rlen = pc.reason_len;
            msg = reason + rlen;
            mlen = pc.msg_len;
        }
    }
    int was_connecting = c->state == WS_CONNECTING;
    if (was_connecting) {
        /* Ended before CONNECTED: report it to connect() as a failure. */
        c->state = WS_FAILED;
        c->fail_kind = pc.kind ? pc.kind : PROTO_EK_INTERNAL;
        c->fail_retryable = RT_RETRY_YES;
        c->fail_stage = PROTO_STAGE_NONE;
        free(c->fail_msg);
        c->fail_msg = mlen ? dup_n(msg, mlen) : dup_n("connection closed during connect", 32);
    } else {
        c->state = WS_CLOSED;
    }
    c->close_code = pc.code;
    c->closed_by = pc.by;
    c->closed_kind = pc.kind < PROTO_EK_COUNT ? pc.kind : PROTO_EK_INTERNAL;
    free(c->close_reason);
    free(c->close_msg);
    c->close_reason = dup_n(reason, rlen);
    c->close_msg = dup_n(msg, mlen);
    c->close_deferred = 0;
    c->credit_pending = 0;
    rx_free(L, c);
    if (c->ch) chan_close(L, c->ch);
    if (c->send_timer) {
        rt_timer_cancel(ws->rt, c->send_timer);
        c->send_timer = 0;
    }
    fail_pings(c, 3);
    wake_all(c);
    conn_maybe_zombie(c);
}

static void on_op_error(struct ws_conn *c, const void *p, uint32_t len)
{
    struct proto_error pe;
    if (len < sizeof pe) return;
    memcpy(&pe, p, sizeof pe);
    const char *msg = (const char *)p + sizeof pe;
    size_t mlen = (uint64_t)sizeof pe + pe.msg_len <= len ? pe.msg_len : 0;
    int kind = pe.kind < PROTO_EK_COUNT ? pe.kind : PROTO_EK_INTERNAL;
    int retry = pe.retryable <= 2 ? pe.retryable : RT_RETRY_NIL;
    switch (pe.op) {
    case PROTO_SEND:
        err_set(&c->send_err, kind, retry, msg, mlen);
        break;
    case PROTO_CLOSE:
        err_set(&c->close_err, kind, retry, msg, mlen);
        break;
    case PROTO_PING:
        err_set(&c->ping_err, kind, retry, msg, mlen);
        fail_pings(c, 4);
        break;
    case PROTO_CONNECT:
        if (c->state == WS_CONNECTING) {
            c->state = WS_FAILED;
            c->fail_kind = kind;
            c->fail_retryable = retry;
            c->fail_stage = PROTO_STAGE_NONE;
            free(c->fail_msg);
            c->fail_msg = dup_n(msg, mlen);
        }
        break;
    default:
        return;
    }
    wake_all(c);
}

int rt_ws_dispatch(struct rt_ws *ws, lua_State *L, const struct shm_rec *rec, const void *p)
{
    if (!ws->strs_idx) return luaL_error(L, "rt_ws_dispatch outside rt_ws_dispatch_begin/end");
    struct ws_conn *c = ws_find(ws, rec->conn);
    if (!c || c->zombie) return 0;
    switch (rec->type) {
    case PROTO_CONNECTED: {
        struct proto_connected pc;
        if (c->state != WS_CONNECTING || rec->len < sizeof pc) return 0;
        memcpy(&pc, p, sizeof pc);
        const char *s = (const char *)p + sizeof pc;
        size_t plen = pc.protocol_len, elen = pc.extensions_len;
        if ((uint64_t)sizeof pc + plen + elen > rec->len) plen = elen = 0;
        c->protocol = dup_n(s, plen);
        c->extensions = dup_n(s + plen, elen);
        c->tx_window = pc.tx_window;
        c->state = WS_OPEN;
        wake_all(c);
        return 0;
    }
    case PROTO_CONNECT_FAIL: {
        struct proto_error pe;
        if (c->state != WS_CONNECTING) return 0;
        memset(&pe, 0, sizeof pe);
        if (rec->len >= sizeof pe) memcpy(&pe, p, sizeof pe);
        size_t mlen = (uint64_t)sizeof pe + pe.msg_len <= rec->len ? pe.msg_len : 0;
        c->state = WS_FAILED;
        c->fail_kind = pe.kind < PROTO_EK_COUNT ? pe.kind : PROTO_EK_INTERNAL;
        c->fail_retryable = pe.retryable <= 2 ? pe.retryable : RT_RETRY_NIL;
        c->fail_stage = pe.stage < PROTO_STAGE_COUNT ? pe.stage : PROTO_STAGE_NONE;
        c->fail_status = pe.http_status;
        free(c->fail_msg);
        c->fail_msg = dup_n((const char *)p + sizeof pe, mlen);
        wake_all(c);
        return 0;
    }
    case PROTO_MSG:
        return on_msg(ws, L, c, rec, p);
    case PROTO_TX_CREDIT: {
        uint64_t n;
        if (rec->len < sizeof n) return 0;
        memcpy(&n, p, sizeof n);
        c->tx_used = n > c->tx_used ? 0 : c->tx_used - n;
        wake_all(c);
        return 0;
    }
    case PROTO_PONG: {
        uint64_t token;
        if (rec->len < sizeof token) return 0;
        memcpy(&token, p, sizeof token);
        for (struct ws_ping *pg = c->pings; pg; pg = pg->next) {
            if (pg->token == token && pg->result == 0) {
                pg->result = 1;
                if (pg->timer) rt_timer_cancel(ws->rt, pg->timer);
                pg->timer = 0;
                rt_task_wake(ws->rt, pg->task);
                break;
            }
        }
        return 0;
    }
    case PROTO_CLOSED:
        if (c->state != WS_CLOSED && c->state != WS_FAILED) on_closed(ws, L, c, p, rec->len);
        return 0;
    case PROTO_OP_ERROR:
        on_op_error(c, p, rec->len);
        return 0;
    default:
        return 0;
    }
}

/* ---- client objects ---- */

static struct ws_box *check_box(lua_State *L)
{
    return rt_checkudata(L, 1, WS_CLIENT_MT);
}

/* Returns false/nil + the error for using a client that is not open. */
static int closed_return(lua_State *L, int false_first, struct ws_conn *c)
{
    if (c && c->state == WS_CLOSED && !c->script_closed && c->close_msg && c->close_msg[0])
        return rt_err_return(L, false_first, PROTO_EK_INTERNAL, RT_RETRY_NO,
                             "connection is closed (invalid connection id): %s", c->close_msg);
    if (c && c->state == WS_CLOSED && !c->script_closed)
        return rt_err_return(L, false_first, PROTO_EK_INTERNAL, RT_RETRY_NO,
                             "connection is closed (invalid connection id): closed by %s "
                             "with code %d",
                             c->closed_by == PROTO_BY_SERVER   ? "the server"
                             : c->closed_by == PROTO_BY_CLIENT ? "the client"
                                                               : "the broker",
                             c->close_code);
    return rt_err_return(L, false_first, PROTO_EK_INTERNAL, RT_RETRY_NO,
                         "connection is closed (invalid connection id)");
}

static int link_broken_return(lua_State *L, int false_first)
{
    return rt_err_return(L, false_first, PROTO_EK_INTERNAL, RT_RETRY_NO,
                         "the broker link is closed");
}

static int usable(const struct ws_conn *c)
{
    return c && c->state == WS_OPEN && !c->script_closed && c->ws->bridge;
}

/* Ends the current send: releases the lock and the timer, wakes others. */
static void send_release(struct ws_conn *c)
{
    c->sender = NULL;
    c->send_off = 0;
    c->send_begun = 0;
    if (c->send_timer) {
        rt_timer_cancel(c->ws->rt, c->send_timer);
        c->send_timer = 0;
    }
    wake_all(c);
}

static void send_timer_cb(struct rt *rt, void *ctx)
{
    struct ws_conn *c = ctx;
    c->send_timer = 0;
    wake_all(c);
}

/* send_k writes a message in records of at most SEND_PIECE_BYTES, and
 * publishes every piece of at least SEND_PUBLISH_BYTES at once, so that the
 * broker masks and sends one piece while the worker copies the next. */
#define SEND_PIECE_BYTES   (256u << 10)
#define SEND_PUBLISH_BYTES (64u << 10)

/* Stack of send while it runs: 1 client, 2 data, 3 type, 4 deadline (ns,
 * 0 = none). */
static int send_k(lua_State *L, int status, lua_KContext kctx)
{
    struct ws_box *box = lua_touserdata(L, 1);
    struct ws_conn *c = box->c;
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    int binary = lua_tointeger(L, 3) == WS_BINARY;
    int64_t deadline = (int64_t)lua_tointeger(L, 4);
    struct rt_task *me = rt_current_task(L);
    struct rt_ws *ws = c->ws;

    if (c->sender && c->sender != me) {
        if (c->state != WS_OPEN || c->script_closed) return closed_return(L, 1, c);
        add_waiter(L, c);
        return rt_park(L, send_k, 0);
    }
    if (!c->sender) {
        if (!usable(c)) return closed_return(L, 1, c);
        c->sender = me;
        c->send_off = 0;
        c->send_begun = 0;
        err_clear(&c->send_err);
    }
    uint32_t max = ws->bridge ? rt_bridge_max_payload(ws->bridge) : 0;
    if (max > SEND_PIECE_BYTES) max = SEND_PIECE_BYTES;
    for (;;) {
        if (c->send_err.set) {
            struct ws_err e = c->send_err;
            memset(&c->send_err, 0, sizeof c->send_err);
            send_release(c);
            err_return_saved(L, 1, &e);
            free(e.msg);
            return 2;
        }
        if (c->state == WS_CLOSED && c->closed_kind == PROTO_EK_TIMEOUT && !c->script_closed) {
            /* The broker's write (or read) timeout ended the connection
             * while this send was in progress: report it as a timeout. */
            send_release(c);
            return rt_err_return(L, 1, PROTO_EK_TIMEOUT, RT_RETRY_NO,
                                 "send failed; connection closed: %s",
                                 c->close_msg && c->close_msg[0] ? c->close_msg : "timeout");
        }
        if (c->state != WS_OPEN || c->script_closed || !ws->bridge) {
            send_release(c);
            return ws->bridge ? closed_return(L, 1, c) : link_broken_return(L, 1);
        }
        if (c->send_begun && c->send_off == len) {
            send_release(c);
            lua_pushboolean(L, 1);
            return 1;
        }
        if (deadline && rt_now_ns() >= deadline) {
            /* The message may be half written: the connection cannot go on. */
            send_release(c);
            c->timed_out = 1;
            c->state = WS_CLOSING;
            static const char why[] = "write timeout";
            struct proto_close pc = {.code = 1001, .reason_len = sizeof why - 1};
            rt_bridge_write(ws->bridge, L, PROTO_CLOSE, 0, c->id, &pc, sizeof pc, why,
                            sizeof why - 1);
            return rt_err_return(L, 1, PROTO_EK_TIMEOUT, RT_RETRY_NO,
                                 "send timed out after %u ms (write_timeout); connection closed",
                                 (unsigned)c->write_timeout_ms);
        }
        uint64_t avail = c->tx_window > c->tx_used ? c->tx_window - c->tx_used : 0;
        size_t left = len - c->send_off;
        uint64_t room = c->send_begun ? max : max - sizeof(uint64_t);
        uint64_t n = left < room ? left : room;
        if (n > avail) n = avail;
        if (n == 0 && left > 0) break; /* window exhausted: wait for TX_CREDIT */
        uint16_t flags = binary ? PROTO_F_BINARY : 0;
        if (c->send_off + n < len) flags |= PROTO_F_MORE;
        int r;
        if (!c->send_begun) {
            uint64_t total = len;
            r = rt_bridge_write(ws->bridge, L, PROTO_SEND, flags | PROTO_F_BEGIN, c->id, &total,
                                sizeof total, data, (uint32_t)n);
        } else {
            r = rt_bridge_write(ws->bridge, L, PROTO_SEND, flags, c->id, data + c->send_off,
                                (uint32_t)n, NULL, 0);
        }
        if (r < 0) {
            send_release(c);
            return link_broken_return(L, 1);
        }
        c->send_begun = 1;
        c->send_off += n;
        c->tx_used += n;
        /* A large message goes out piece by piece: let the broker start on
         * this piece while the next one is copied into the ring. */
        if (n >= SEND_PUBLISH_BYTES && c->send_off < len) rt_bridge_publish(ws->bridge);
    }
    if (deadline && !c->send_timer)
        c->send_timer = rt_timer_add(ws->rt, deadline, send_timer_cb, c);
    add_waiter(L, c);
    return rt_park(L, send_k, 0);
}

/* client:send(data, type?) -> true | false, err. Yields. */
static int lsend(lua_State *L)
{
    struct ws_box *box = check_box(L);
    luaL_checktype(L, 2, LUA_TSTRING);
    lua_Integer type = luaL_optinteger(L, 3, WS_TEXT);
    luaL_argcheck(L, type == WS_TEXT || type == WS_BINARY, 3,
                  "must be websocket.TEXT or websocket.BINARY");
    struct ws_conn *c = box->c;
    if (!usable(c)) return c && !c->ws->bridge ? link_broken_return(L, 1) : closed_return(L, 1, c);
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    if (len > PROTO_MAX_MESSAGE)
        return rt_err_return(L, 1, PROTO_EK_INVALID, RT_RETRY_NO,
                             "message of %zu bytes is larger than the maximum of %u bytes", len,
                             (unsigned)PROTO_MAX_MESSAGE);
    if (type == WS_TEXT && !utf8_valid((const unsigned char *)data, len))
        return rt_err_return(L, 1, PROTO_EK_INVALID, RT_RETRY_NO,
                             "text message is not valid UTF-8 (send it as websocket.BINARY?)");
    /* Fast path: nobody else is sending, no write timeout, and the message
     * fits into one record and into the send window: one SEND record, no
     * waiting (the general path below does the same in more steps). */
    struct rt_ws *ws = c->ws;
    uint64_t avail = c->tx_window > c->tx_used ? c->tx_window - c->tx_used : 0;
    if (!c->sender && !c->write_timeout_ms && len <= avail &&
        len + sizeof(uint64_t) <= rt_bridge_max_payload(ws->bridge)) {
        if (c->send_err.set) err_clear(&c->send_err);
        uint64_t total = len;
        uint16_t flags = (type == WS_BINARY ? PROTO_F_BINARY : 0) | PROTO_F_BEGIN;
        if (rt_bridge_write(ws->bridge, L, PROTO_SEND, flags, c->id, &total, sizeof total, data,
                            (uint32_t)len) < 0)
            return link_broken_return(L, 1);
        c->tx_used += len;
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_settop(L, 3);
    lua_pushinteger(L, type);
    lua_replace(L, 3);
    int64_t deadline = 0;
    if (c->write_timeout_ms) deadline = rt_now_ns() + (int64_t)c->write_timeout_ms * 1000000;
    lua_pushinteger(L, (lua_Integer)deadline);
    return send_k(L, LUA_OK, 0);
}

static void ping_unlink(struct ws_conn *c, struct ws_ping *p)
{
    for (struct ws_ping **pp = &c->pings; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->timer) rt_timer_cancel(c->ws->rt, p->timer);
    free(p);
}

static void ping_timer_cb(struct rt *rt, void *ctx)
{
    struct ws_ping *p = ctx;
    p->timer = 0;
    if (p->result == 0) {
        p->result = 2;
        rt_task_wake(rt, p->task);
    }
}

static int ping_k(lua_State *L, int status, lua_KContext kctx)
{
    struct ws_box *box = lua_touserdata(L, 1);
    struct ws_conn *c = box->c;
    struct ws_ping *p = (struct ws_ping *)kctx;
    if (p->result == 0) return rt_park(L, ping_k, kctx);
    int result = p->result;
    ping_unlink(c, p);
    switch (result) {
    case 1:
        lua_pushboolean(L, 1);
        return 1;
    case 2:
        return rt_err_return(
            L, 1, PROTO_EK_TIMEOUT, RT_RETRY_YES, "no pong within %u ms",
            (unsigned)(c->read_timeout_ms ? c->read_timeout_ms : WS_DEFAULT_PING_MS));
    case 4:
        if (c->ping_err.set) return err_return_saved(L, 1, &c->ping_err);
        return closed_return(L, 1, c);
    default:
        return closed_return(L, 1, c);
    }
}

/* client:ping() -> true | false, err. Yields until the pong. */
static int lping(lua_State *L)
{
    struct ws_box *box = check_box(L);
    struct ws_conn *c = box->c;
    if (!usable(c)) return c && !c->ws->bridge ? link_broken_return(L, 1) : closed_return(L, 1, c);
    struct rt_ws *ws = c->ws;
    struct ws_ping *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "not enough memory");
    p->token = ++ws->next_token;
    p->task = rt_current_task(L);
    p->next = c->pings;
    c->pings = p;
    if (rt_bridge_write(ws->bridge, L, PROTO_PING, 0, c->id, &p->token, sizeof p->token, NULL, 0) <
        0) {
        ping_unlink(c, p);
        return link_broken_return(L, 1);
    }
    if (p->result != 0) /* the conn ended while we waited for ring space */
        return ping_k(L, LUA_OK, (lua_KContext)p);
    uint32_t ms = c->read_timeout_ms ? c->read_timeout_ms : WS_DEFAULT_PING_MS;
    p->timer = rt_timer_add(ws->rt, rt_now_ns() + (int64_t)ms * 1000000, ping_timer_cb, p);
    lua_settop(L, 1);
    return rt_park(L, ping_k, (lua_KContext)p);
}

static int close_k(lua_State *L, int status, lua_KContext kctx)
{
    struct ws_box *box = lua_touserdata(L, 1);
    struct ws_conn *c = box->c;
    if (c->close_err.set) {
        struct ws_err e = c->close_err;
        memset(&c->close_err, 0, sizeof c->close_err);
        err_return_saved(L, 1, &e);
        free(e.msg);
        return 2;
    }
    if (c->state == WS_CLOSED || c->state == WS_FAILED || !c->ws->bridge) {
        lua_pushboolean(L, 1);
        return 1;
    }
    add_waiter(L, c);
    return rt_park(L, close_k, 0);
}

static int sendable_close_code(lua_Integer code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* client:close(code?, reason?) -> true | false, err. Yields until CLOSED. */
static int lclose(lua_State *L)
{
    struct ws_box *box = check_box(L);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    luaL_argcheck(L, sendable_close_code(code), 2,
                  "close code must be 1000-1003, 1007-1014 or 3000-4999");
    size_t rlen = 0;
    const char *reason = luaL_optlstring(L, 3, "", &rlen);
    luaL_argcheck(L, rlen <= PROTO_MAX_REASON, 3, "close reason longer than 123 bytes");
    luaL_argcheck(L, utf8_valid((const unsigned char *)reason, rlen), 3,
                  "close reason is not valid UTF-8");
    struct ws_conn *c = box->c;
    if (!c || c->script_closed)
        return rt_err_return(L, 1, PROTO_EK_INTERNAL, RT_RETRY_NO,
                             "connection already closed by the script (invalid connection id)");
    c->script_closed = 1;
    lua_settop(L, 1);
    if (c->state == WS_OPEN) {
        struct proto_close pc = {.code = (uint16_t)code, .reason_len = (uint16_t)rlen};
        c->state = WS_CLOSING;
        if (!c->ws->bridge || rt_bridge_write(c->ws->bridge, L, PROTO_CLOSE, 0, c->id, &pc,
                                              sizeof pc, reason, (uint32_t)rlen) < 0)
            return link_broken_return(L, 1);
    }
    return close_k(L, LUA_OK, 0);
}

static void push_opt_string(lua_State *L, const char *s)
{
    if (s && s[0])
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

/* client:info() -> table (see websocket.h for the fields). */
static int linfo(lua_State *L)
{
    struct ws_box *box = check_box(L);
    struct ws_conn *c = box->c;
    lua_createtable(L, 0, 8);
    if (!c) {
        lua_pushliteral(L, "closed");
        lua_setfield(L, -2, "state");
        return 1;
    }
    static const char *const states[] = {"connecting", "open", "closing", "closed", "closed"};
    lua_pushstring(L, states[c->state]);
    lua_setfield(L, -2, "state");
    lua_pushstring(L, c->url);
    lua_setfield(L, -2, "url");
    push_opt_string(L, c->protocol);
    lua_setfield(L, -2, "protocol");
    push_opt_string(L, c->extensions);
    lua_setfield(L, -2, "extensions");
    if (c->state == WS_CLOSED) {
        lua_pushinteger(L, c->close_code);
        lua_setfield(L, -2, "close_code");
        lua_pushstring(L, c->close_reason ? c->close_reason : "");
        lua_setfield(L, -2, "close_reason");
        lua_pushstring(L, c->closed_by == PROTO_BY_CLIENT   ? "client"
                          : c->closed_by == PROTO_BY_SERVER ? "server"
                                                            : "broker");
        lua_setfield(L, -2, "closed_by");
        push_opt_string(L, c->close_msg);
        lua_setfield(L, -2, "close_message");
    }
    return 1;
}

/* client:channel() / client:receive() -> the connection's channel. */
static int lchannel(lua_State *L)
{
    struct ws_box *box = check_box(L);
    struct ws_conn *c = box->c;
    if (!c || c->ch_ref == LUA_NOREF) return luaL_error(L, "client has no channel");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ch_ref);
    return 1;
}

/* Shared by __gc and __close: an open client sends CLOSE 1001 without
 * waiting; __gc also detaches the box. Idempotent. */
static void client_release(struct ws_box *box, int collect)
{
    struct ws_conn *c = box->c;
    if (!c) return;
    if (!c->script_closed) close_nowait(c);
    if (collect) {
        box->c = NULL;
        c->box = NULL;
        conn_maybe_zombie(c);
    }
}

static int lgc(lua_State *L)
{
    client_release(lua_touserdata(L, 1), 1);
    return 0;
}

static int lclose_tbc(lua_State *L)
{
    client_release(check_box(L), 0);
    return 0;
}

static int ltostring(lua_State *L)
{
    struct ws_box *box = check_box(L);
    struct ws_conn *c = box->c;
    static const char *const states[] = {"connecting", "open", "closing", "closed", "closed"};
    lua_pushfstring(L, "websocket.client(%s, %s)", c ? c->url : "?",
                    c ? states[c->state] : "closed");
    return 1;
}

/* ---- connect ---- */

/* Connect options after validation. */
struct ws_opts {
    uint32_t dial_ms, read_ms, write_ms; /* ms, 0 = none */
    uint32_t threshold;                  /* compression_threshold bytes */
    uint32_t read_limit;                 /* bytes, 0 = default */
    uint32_t capacity;                   /* channel_capacity */
    uint8_t compression;                 /* PROTO_COMPRESSION value */
    int headers_idx;                     /* stack index of headers table, 0 = none */
    int protocols_idx;                   /* stack index of protocols table, 0 = none */
    uint32_t n_headers, n_protocols;     /* counts */
    size_t var_bytes;                    /* bytes of the header/protocol part */
};

/* Pushes nil and an INVALID error naming the option; returns 2. */
static int opt_error(lua_State *L, const char *opt, const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "invalid option '%s': ", opt);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, opt);
    lua_setfield(L, -2, "option");
    int details = lua_gettop(L);
    lua_pushnil(L);
    rt_err_push(L, PROTO_EK_INVALID, RT_RETRY_NO, details, msg);
    lua_remove(L, details);
    return 2;
}

/* Reads a duration option at idx into ms. Returns 0 or pushes the error. */
static int opt_duration(lua_State *L, int idx, const char *name, uint32_t *ms)
{
    int64_t ns;
    const char *why = "";
    if (lua_type(L, idx) != LUA_TNUMBER && lua_type(L, idx) != LUA_TSTRING)
        return opt_error(L, name, "must be a duration (milliseconds or a string such as \"5s\")");
    if (rt_duration_arg(L, idx, 1000000, &ns, &why) < 0) return opt_error(L, name, "%s", why);
    int64_t v = ns / 1000000 + (ns % 1000000 ? 1 : 0);
    *ms = v > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return 0;
}

/* Reads an integer option at idx in [lo, hi]. Returns 0 or pushes the error. */
static int opt_int(lua_State *L, int idx, const char *name, lua_Integer lo, lua_Integer hi,
                   uint32_t *out)
{
    int isnum = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &isnum);
    if (!isnum || v < lo || v > hi)
        return opt_error(L, name, "must be an integer from %lld to %lld", (long long)lo,
                         (long long)hi);
    *out = (uint32_t)v;
    return 0;
}

static int reserved_header(const char *s, size_t n)
{
    static const char *const names[] = {"host", "upgrade", "connection", "content-length",
                                        "transfer-encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0) return 1;
    return n >= 14 && strncasecmp(s, "sec-websocket-", 14) == 0;
}

/* Validates the headers table at idx. Returns 0 or pushes the error. */
static int check_headers(lua_State *L, int idx, struct ws_opts *o)
{
    if (!lua_istable(L, idx))
        return opt_error(L, "headers", "must be a table of name = value strings");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return opt_error(L, "headers", "names and values must be strings");
        size_t nl, vl;
        const char *name = lua_tolstring(L, -2, &nl);
        const char *val = lua_tolstring(L, -1, &vl);
        if (!is_token(name, nl))
            return opt_error(L, "headers", "header name '%s' is not an HTTP token", name);
        if (reserved_header(name, nl))
            return opt_error(L, "headers", "header '%s' is set by the client and cannot be given",
                             name);
        for (size_t i = 0; i < vl; i++)
            if ((unsigned char)val[i] < 0x20 || val[i] == 0x7f)
                return opt_error(L, "headers",
                                 "value of header '%s' contains a control character (CR, LF, "
                                 "NUL, TAB...)",
                                 name);
        if (nl + vl > PROTO_MAX_HEADER_BYTES)
            return opt_error(L, "headers", "header '%s' is longer than %u bytes", name,
                             (unsigned)PROTO_MAX_HEADER_BYTES);
        if (++o->n_headers > PROTO_MAX_HEADERS)
            return opt_error(L, "headers", "more than %u headers", (unsigned)PROTO_MAX_HEADERS);
        o->var_bytes += 4 + nl + vl;
        lua_pop(L, 1);
    }
    o->headers_idx = idx;
    return 0;
}

/* Validates the protocols array at idx. Returns 0 or pushes the error. */
static int check_protocols(lua_State *L, int idx, struct ws_opts *o)
{
    if (!lua_istable(L, idx)) return opt_error(L, "protocols", "must be an array of strings");
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_Integer keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        keys++;
        lua_pop(L, 1);
    }
    if (keys != n) return opt_error(L, "protocols", "must be an array (a sequence) of strings");
    if (n > (lua_Integer)PROTO_MAX_PROTOCOLS)
        return opt_error(L, "protocols", "more than %u protocols", (unsigned)PROTO_MAX_PROTOCOLS);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            return opt_error(L, "protocols", "entry %lld is not a string", (long long)i);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (!is_token(s, len) || len > 0xFFFF)
            return opt_error(L, "protocols", "'%s' is not a valid protocol name (HTTP token)", s);
        for (lua_Integer j = 1; j < i; j++) {
            lua_rawgeti(L, idx, j);
            int same = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
            if (same) return opt_error(L, "protocols", "'%s' is listed twice", s);
        }
        o->var_bytes += 2 + len;
        lua_pop(L, 1);
    }
    o->n_protocols = (uint32_t)n;
    o->protocols_idx = idx;
    return 0;
}

/* Validates the options table at idx (0 = none) into o. Returns 0, or 2
 * with nil, err pushed. On success the headers and protocols tables (when
 * given) are pushed and o->headers_idx / o->protocols_idx point at them. */
static int parse_options(lua_State *L, int idx, struct ws_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dial_ms = WS_DEFAULT_DIAL_MS;
    o->capacity = WS_DEFAULT_CAPACITY;
    if (!idx) return 0;
    int have_headers = 0, have_protocols = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            return opt_error(L, "?", "option names must be strings");
        const char *k = lua_tostring(L, -2);
        int r = 0;
        if (strcmp(k, "headers") == 0) {
            r = check_headers(L, v, o);
            have_headers = 1;
        } else if (strcmp(k, "protocols") == 0) {
            r = check_protocols(L, v, o);
            have_protocols = 1;
        } else if (strcmp(k, "dial_timeout") == 0) {
            r = opt_duration(L, v, k, &o->dial_ms);
        } else if (strcmp(k, "read_timeout") == 0) {
            r = opt_duration(L, v, k, &o->read_ms);
        } else if (strcmp(k, "write_timeout") == 0) {
            r = opt_duration(L, v, k, &o->write_ms);
        } else if (strcmp(k, "compression") == 0) {
            int isnum = 0, ok = 0;
            lua_Integer m = 0;
            if (lua_type(L, v) == LUA_TNUMBER) m = lua_tointegerx(L, v, &isnum);
            for (size_t i = 0; isnum && i < sizeof compression_modes / sizeof compression_modes[0];
                 i++)
                ok |= compression_modes[i].value == m;
            if (!ok)
                return opt_error(L, k,
                                 "must be one of websocket.COMPRESSION.DISABLED (0), "
                                 "CONTEXT_TAKEOVER (1) or NO_CONTEXT (2)");
            o->compression = (uint8_t)m;
        } else if (strcmp(k, "compression_threshold") == 0) {
            r = opt_int(L, v, k, 0, WS_MAX_THRESHOLD, &o->threshold);
        } else if (strcmp(k, "read_limit") == 0) {
            r = opt_int(L, v, k, 0, WS_MAX_READ_LIMIT, &o->read_limit);
        } else if (strcmp(k, "channel_capacity") == 0) {
            r = opt_int(L, v, k, 1, PROTO_MAX_CHANNEL_CAPACITY, &o->capacity);
        } else {
            return opt_error(L, k, "unknown option");
        }
        if (r) return r;
        lua_settop(L, v - 1); /* keep the key for lua_next */
    }
    if (have_headers) {
        lua_getfield(L, idx, "headers");
        o->headers_idx = lua_gettop(L);
    }
    if (have_protocols) {
        lua_getfield(L, idx, "protocols");
        o->protocols_idx = lua_gettop(L);
    }
    return 0;
}

static uint8_t *put_str16(uint8_t *w, const char *s, size_t n)
{
    uint16_t l = (uint16_t)n;
    memcpy(w, &l, 2);
    memcpy(w + 2, s, n);
    return w + 2 + n;
}

static int connect_k(lua_State *L, int status, lua_KContext kctx)
{
    struct ws_conn *c = (struct ws_conn *)kctx;
    if (c->state == WS_CONNECTING) {
        if (!c->ws->bridge) {
            c->state = WS_FAILED;
            c->fail_kind = PROTO_EK_INTERNAL;
            c->fail_retryable = RT_RETRY_NO;
            free(c->fail_msg);
            c->fail_msg = dup_n("the broker link is closed", 25);
        } else {
            add_waiter(L, c);
            return rt_park(L, connect_k, kctx);
        }
    }
    if (c->state == WS_FAILED) {
        lua_createtable(L, 0, 3);
        push_public_url(L, c->url);
        lua_setfield(L, -2, "url");
        lua_pushstring(L, stage_names[c->fail_stage]);
        lua_setfield(L, -2, "stage");
        if (c->fail_status) {
            lua_pushinteger(L, c->fail_status);
            lua_setfield(L, -2, "status");
        }
        int details = lua_gettop(L);
        lua_pushnil(L);
        rt_err_push(L, c->fail_kind, c->fail_retryable, details,
                    c->fail_msg && c->fail_msg[0] ? c->fail_msg : "connection failed");
        lua_remove(L, details);
        c->connect_pending = 0;
        conn_maybe_zombie(c);
        return 2;
    }
    /* CONNECTED; MSG and even CLOSED may have followed already. */
    struct ws_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->c = c;
    c->box = box;
    c->connect_pending = 0;
    rt_setmetatable(L, WS_CLIENT_MT);
    return 1;
}

/* websocket.connect(url, options?) -> client | nil, err. Yields. */
static int lconnect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    struct rt_ws *ws = ws_get(L);
    if (!ws || !ws->bridge)
        return rt_err_return(L, 0, PROTO_EK_INTERNAL, RT_RETRY_NO, "no context");
    struct ws_opts o;
    int r = parse_options(L, lua_isnil(L, 2) ? 0 : 2, &o);
    if (r) return r;
    size_t url_len;
    const char *url = lua_tolstring(L, 1, &url_len);
    if (url_len > PROTO_MAX_URL)
        return rt_err_return(L, 0, PROTO_EK_INVALID, RT_RETRY_NO, "URL is longer than %u bytes",
                             (unsigned)PROTO_MAX_URL);
    if (url_len == 0) return rt_err_return(L, 0, PROTO_EK_INVALID, RT_RETRY_NO, "URL is empty");
    size_t total = sizeof(struct proto_connect) + url_len + o.var_bytes;
    uint32_t max = rt_bridge_max_payload(ws->bridge);
    if (total > max)
        return rt_err_return(L, 0, PROTO_EK_INVALID, RT_RETRY_NO,
                             "URL, headers and protocols take %zu bytes, more than the %u that "
                             "fit into one request",
                             total, (unsigned)max);

    uint8_t *buf = lua_newuserdatauv(L, total, 0);
    struct proto_connect pc = {
        .dial_timeout_ms = o.dial_ms,
        .read_timeout_ms = o.read_ms,
        .write_timeout_ms = o.write_ms,
        .compression_threshold = o.threshold,
        .read_limit = o.read_limit,
        .channel_capacity = o.capacity,
        .compression = o.compression,
        .url_len = (uint16_t)url_len,
        .n_headers = (uint16_t)o.n_headers,
        .n_protocols = (uint16_t)o.n_protocols,
    };
    memcpy(buf, &pc, sizeof pc);
    uint8_t *w = buf + sizeof pc;
    memcpy(w, url, url_len);
    w += url_len;
    if (o.headers_idx) {
        lua_pushnil(L);
        while (lua_next(L, o.headers_idx)) {
            size_t nl, vl;
            const char *name = lua_tolstring(L, -2, &nl);
            const char *val = lua_tolstring(L, -1, &vl);
            w = put_str16(w, name, nl);
            w = put_str16(w, val, vl);
            lua_pop(L, 1);
        }
    }
    for (uint32_t i = 1; i <= o.n_protocols; i++) {
        size_t len;
        lua_rawgeti(L, o.protocols_idx, i);
        const char *s = lua_tolstring(L, -1, &len);
        w = put_str16(w, s, len);
        lua_pop(L, 1);
    }

    struct ws_conn *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "not enough memory");
    c->ws = ws;
    c->ch_ref = LUA_NOREF;
    c->url = dup_n(url, url_len);
    if (!c->url) {
        free(c);
        return luaL_error(L, "not enough memory");
    }
    c->id = ++ws->next_id;
    c->state = WS_CONNECTING;
    c->connect_pending = 1;
    c->read_timeout_ms = o.read_ms;
    c->write_timeout_ms = o.write_ms;
    c->capacity = o.capacity;
    c->credit_batch = o.capacity / 4 ? o.capacity / 4 : 1;
    c->next = ws->conns;
    ws->conns = c;
    c->ch = chan_new(L, (int)o.capacity);
    c->ch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    chan_set_take_hook(c->ch, take_hook, c);

    if (rt_bridge_write(ws->bridge, L, PROTO_CONNECT, 0, c->id, buf, (uint32_t)total, NULL, 0) <
        0) {
        c->state = WS_FAILED;
        c->connect_pending = 0;
        conn_maybe_zombie(c);
        return link_broken_return(L, 0);
    }
    lua_settop(L, 0);
    return connect_k(L, LUA_OK, (lua_KContext)c);
}

/* ---- module ---- */

static const luaL_Reg client_methods[] = {
    {"send", lsend},       {"ping", lping}, {"close", lclose}, {"channel", lchannel},
    {"receive", lchannel}, {"info", linfo}, {NULL, NULL},
};

int rt_open_websocket(lua_State *L)
{
    luaL_checkstack(L, 8, "websocket");
    if (rt_newmetatable(L, WS_CLIENT_MT)) {
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lgc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lclose_tbc);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, ltostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);

    lua_createtable(L, 0, 12);
    lua_pushcfunction(L, lconnect);
    lua_setfield(L, -2, "connect");
    for (size_t i = 0; i < sizeof msg_types / sizeof msg_types[0]; i++) {
        char key[32];
        if (msg_types[i].value == WS_TEXT || msg_types[i].value == WS_BINARY) {
            lua_pushinteger(L, msg_types[i].value);
            lua_setfield(L, -2, msg_types[i].name);
        }
        snprintf(key, sizeof key, "TYPE_%s", msg_types[i].name);
        lua_pushstring(L, msg_types[i].str);
        lua_setfield(L, -2, key);
    }
    lua_createtable(L, 0, 3);
    for (size_t i = 0; i < sizeof compression_modes / sizeof compression_modes[0]; i++) {
        lua_pushinteger(L, compression_modes[i].value);
        lua_setfield(L, -2, compression_modes[i].name);
    }
    rt_readonly(L);
    lua_setfield(L, -2, "COMPRESSION");
    lua_createtable(L, 0, 16);
    for (size_t i = 0; i < sizeof close_codes / sizeof close_codes[0]; i++) {
        lua_pushinteger(L, close_codes[i].value);
        lua_setfield(L, -2, close_codes[i].name);
    }
    rt_readonly(L);
    lua_setfield(L, -2, "CLOSE_CODES");
    rt_readonly(L);
    return 1;
}

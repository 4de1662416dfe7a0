/* Go-style channels and select for scripts (module `channel`), and the C
 * entry points other modules use to feed channels from outside a task.
 *
 * Layer: lua/. Uses the scheduler (rt.h) to park and wake tasks; must not
 * depend on sockets, files, the broker link or libwebsockets.
 *
 * Model (after libmill's chan.c). A channel has a ring buffer of `cap`
 * values and two FIFO queues of parked waiters, receivers and senders. A
 * blocking operation (receive, send or a whole select) is one struct chan_op
 * with one waiter per case; when any waiter completes, the op is marked
 * fired and its sibling waiters are unlinked from their channels, so a
 * counterpart always finds live waiters at the queue heads. A waiting
 * receiver means the buffer is empty; a waiting sender means it is full.
 *
 * Values never live in C. Buffered values sit in a Lua table anchored by a
 * registry reference (its array part is allocated up front, so storing into
 * it never allocates). A parked sender's value stays on its own thread's
 * stack (waiter vidx) until a receiver copies it. A value handed to a parked
 * receiver is pushed onto the receiver's thread stack, where its
 * continuation finds it when the task resumes: no allocation per park/wake.
 *
 * Op blocks (op + waiters) come from per-state free lists by size class and
 * are full userdata anchored for the life of the state, so they are reused
 * rather than allocated per operation.
 *
 * select picks uniformly at random among the ready cases (xorshift PRNG
 * seeded per state), so no channel starves. */
#include "lua/channel.h"

#include <lauxlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "lua/rt.h"

static const char CHAN_MT[] = "rt.channel";
static const char CASE_MT[] = "rt.chancase";
#define REG_CTX   "rt.chan.ctx" /* registry: the per-state context userdata */
#define REG_MAP   "rt.chan.map" /* registry: weak map lightuserdata(chan) -> userdata */
#define MAX_CLASS 10            /* op blocks hold up to 1 << MAX_CLASS cases */
#define MAX_CASES (1 << MAX_CLASS)
#define MAX_CAP   (1 << 24) /* largest buffer a script may ask for */

struct chan_op;

/* One case of a parked operation, linked into its channel's queue. */
struct chan_waiter {
    struct chan_waiter *prev, *next; /* neighbours in the channel queue */
    struct chan *ch;                 /* channel whose queue holds us; NULL when unlinked */
    struct chan_op *op;              /* owning operation */
    int idx;                         /* 1-based case index in the op */
    int is_send;                     /* 1 = send case, 0 = receive case */
    int vidx;                        /* send: stack index of the value in op->th */
    int chidx;                       /* stack index of the channel userdata in op->th */
};

/* One blocking operation of one task (receive, send or select). */
struct chan_op {
    struct chan_op *next_free; /* free-list link while unused */
    struct rt *rt;             /* runtime, for waking */
    struct rt_task *task;      /* parked task to wake */
    lua_State *th;             /* thread that parked; values are delivered onto its stack */
    int cls;                   /* size class: room for 1 << cls waiters */
    int ncases;                /* waiters in use */
    int fired;                 /* 0 while pending, else 1-based index of the completed case */
    int ok;                    /* 1 = value transferred, 0 = channel was closed */
    struct chan_waiter w[];    /* ncases waiters */
};

struct wq {
    struct chan_waiter *head, *tail; /* FIFO of parked waiters */
};

/* Per-state context: PRNG and op block pools. Lives in a userdata anchored in
 * the registry. */
struct chan_ctx {
    uint64_t rng;                        /* xorshift64 state, never 0 */
    struct chan_op *free[MAX_CLASS + 1]; /* free op blocks by size class */
    int pool_ref;                        /* registry ref of the table anchoring blocks */
    int pool_len;                        /* blocks in that table */
};

struct chan {
    struct chan_ctx *ctx; /* per-state context (anchored in the registry) */
    int cap;              /* buffered slots; 0 = unbuffered */
    int head;             /* ring index (0-based) of the oldest buffered value */
    int count;            /* values buffered now */
    int closed;           /* 1 once closed */
    int buf_ref;          /* registry ref of the buffer table, LUA_NOREF if cap == 0 */
    struct wq recvq;      /* parked receivers */
    struct wq sendq;      /* parked senders */
    chan_take_fn take_fn; /* flow-control hook, may be NULL */
    void *take_ctx;       /* its context */
};

/* A select case: userdata with user values 1 = channel, 2 = value. */
struct chan_case {
    int is_send; /* 1 = case_send, 0 = case_receive */
};

/* ---- context and pools ---- */

static uint64_t rng_next(struct chan_ctx *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

static struct chan_ctx *get_ctx(lua_State *L)
{
    luaL_checkstack(L, 4, "channel");
    if (lua_getfield(L, LUA_REGISTRYINDEX, REG_CTX) == LUA_TUSERDATA) {
        struct chan_ctx *c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c;
    }
    lua_pop(L, 1);
    struct chan_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->pool_ref = LUA_NOREF;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* splitmix64 over clocks and addresses: scripts cannot predict it */
    uint64_t z = (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 32) ^ (uint64_t)b.tv_nsec ^
                 (uint64_t)(uintptr_t)c ^ ((uint64_t)(uintptr_t)L << 17);
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    c->rng = z ? z : 0x2545f4914f6cdd1dull;
    lua_setfield(L, LUA_REGISTRYINDEX, REG_CTX);
    lua_newtable(L);
    c->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L); /* weak map for chan_push */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_MAP);
    return c;
}

static struct chan_op *op_get(lua_State *L, struct chan_ctx *c, int ncases)
{
    int cls = 0;
    while ((1 << cls) < ncases)
        cls++;
    struct chan_op *op = c->free[cls];
    if (op) {
        c->free[cls] = op->next_free;
    } else {
        luaL_checkstack(L, 2, "channel");
        op = lua_newuserdatauv(L, sizeof *op + ((size_t)1 << cls) * sizeof op->w[0], 0);
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->pool_ref);
        lua_insert(L, -2);
        lua_rawseti(L, -2, ++c->pool_len);
        lua_pop(L, 1);
        op->cls = cls;
    }
    op->next_free = NULL;
    op->rt = rt_from_lua(L);
    op->task = rt_current_task(L);
    op->th = L;
    op->ncases = ncases;
    op->fired = 0;
    op->ok = 0;
    for (int i = 0; i < ncases; i++) {
        struct chan_waiter *w = &op->w[i];
        memset(w, 0, sizeof *w);
        w->op = op;
        w->idx = i + 1;
    }
    return op;
}

static void op_put(struct chan_ctx *c, struct chan_op *op)
{
    op->next_free = c->free[op->cls];
    c->free[op->cls] = op;
}

/* ---- waiter queues ---- */

static void wq_push(struct wq *q, struct chan *ch, struct chan_waiter *w)
{
    w->ch = ch;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static void wq_unlink(struct chan_waiter *w)
{
    struct chan *ch = w->ch;
    if (!ch) return;
    struct wq *q = w->is_send ? &ch->sendq : &ch->recvq;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->ch = NULL;
    w->prev = w->next = NULL;
}

/* Completes w's operation: records the case, unlinks every waiter of the op
 * and wakes its task. */
static void fire(struct chan_waiter *w, int ok)
{
    struct chan_op *op = w->op;
    op->fired = w->idx;
    op->ok = ok;
    for (int i = 0; i < op->ncases; i++)
        wq_unlink(&op->w[i]);
    rt_task_wake(op->rt, op->task);
}

static void take_hook(struct chan *ch)
{
    if (ch->take_fn) ch->take_fn(ch->take_ctx, ch);
}

/* ---- buffer ---- */

/* Pops the value at the top of L into the buffer tail (count < cap). */
static void buf_put(lua_State *L, struct chan *ch)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->buf_ref); /* v buf */
    lua_pushvalue(L, -2);                           /* v buf v */
    lua_rawseti(L, -2, (ch->head + ch->count) % ch->cap + 1);
    lua_settop(L, -3);
    ch->count++;
}

/* Pushes the oldest buffered value (count > 0) and frees its slot. */
static void buf_take(lua_State *L, struct chan *ch)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->buf_ref); /* buf */
    lua_rawgeti(L, -1, ch->head + 1);               /* buf v */
    lua_pushnil(L);
    lua_rawseti(L, -3, ch->head + 1);
    lua_replace(L, -2); /* v */
    ch->head = ch->head + 1 == ch->cap ? 0 : ch->head + 1;
    ch->count--;
}

/* Pushes onto L the value a parked sender offers. */
static void push_sender_value(lua_State *L, struct chan_waiter *w)
{
    lua_State *th = w->op->th;
    lua_pushvalue(th, w->vidx);
    lua_xmove(th, L, 1);
}

/* ---- core operations (no blocking) ---- */

/* Receive without blocking: 1 = a value was pushed, 0 = closed and drained
 * (nothing pushed), -1 = it would block. */
static int try_recv(lua_State *L, struct chan *ch)
{
    luaL_checkstack(L, 4, "channel");
    struct chan_waiter *w = ch->sendq.head;
    if (ch->count > 0) {
        buf_take(L, ch);
        if (w) { /* the buffer was full: move the first parked sender in */
            push_sender_value(L, w);
            buf_put(L, ch);
            fire(w, 1);
        }
        take_hook(ch);
        return 1;
    }
    if (w) {
        push_sender_value(L, w);
        fire(w, 1);
        take_hook(ch);
        return 1;
    }
    return ch->closed ? 0 : -1;
}

/* Hands the value on top of L to a parked receiver or to the buffer of an
 * open channel: 1 = done (popped), -1 = it would block, -2 = no stack space
 * on the receiver (memory); the value stays on top unless done. */
static int put_top(lua_State *L, struct chan *ch)
{
    struct chan_waiter *w = ch->recvq.head;
    if (w) {
        lua_State *th = w->op->th;
        if (!lua_checkstack(th, 1)) return -2;
        lua_xmove(L, th, 1);
        fire(w, 1);
        take_hook(ch);
        return 1;
    }
    if (ch->count < ch->cap) {
        buf_put(L, ch);
        return 1;
    }
    return -1;
}

/* Send the value at vidx without blocking: 1 = done, 0 = channel closed,
 * -1 = it would block, -2 = no stack space on the receiver (memory). */
static int try_send(lua_State *L, struct chan *ch, int vidx)
{
    if (ch->closed) return 0;
    lua_pushvalue(L, vidx);
    int r = put_top(L, ch);
    if (r != 1) lua_pop(L, 1);
    return r;
}

static int recv_ready(const struct chan *ch)
{
    return ch->count > 0 || ch->sendq.head || ch->closed;
}

static int send_ready(const struct chan *ch)
{
    return ch->closed || ch->recvq.head || ch->count < ch->cap;
}

/* ---- C API ---- */

static struct chan *check_chan(lua_State *L, int idx)
{
    return rt_checkudata(L, idx, CHAN_MT);
}

struct chan *chan_check(lua_State *L, int idx)
{
    return rt_testudata(L, idx, CHAN_MT);
}

static int lchan_gc(lua_State *L)
{
    struct chan *ch = lua_touserdata(L, 1);
    if (ch->buf_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, ch->buf_ref);
        ch->buf_ref = LUA_NOREF;
    }
    return 0;
}

struct chan *chan_new(lua_State *L, int capacity)
{
    if (capacity < 0 || capacity > MAX_CAP)
        luaL_error(L, "channel capacity out of range (0..%d)", MAX_CAP);
    struct chan_ctx *c = get_ctx(L);
    luaL_checkstack(L, 4, "channel");
    if (capacity > 0) lua_createtable(L, capacity, 0);
    struct chan *ch = lua_newuserdatauv(L, sizeof *ch, 0);
    memset(ch, 0, sizeof *ch);
    ch->ctx = c;
    ch->cap = capacity;
    ch->buf_ref = LUA_NOREF;
    rt_setmetatable(L, CHAN_MT);
    if (capacity > 0) {
        lua_insert(L, -2);
        ch->buf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MAP);
    lua_pushvalue(L, -2);
    lua_rawsetp(L, -2, ch);
    lua_pop(L, 1);
    return ch;
}

void chan_push(lua_State *L, struct chan *ch)
{
    luaL_checkstack(L, 2, "channel");
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MAP);
    lua_rawgetp(L, -1, ch);
    lua_remove(L, -2);
}

int chan_offer(lua_State *L, struct chan *ch, int idx)
{
    if (idx != -1 && lua_absindex(L, idx) != lua_gettop(L)) {
        lua_pushvalue(L, idx);
        lua_remove(L, idx < 0 ? idx - 1 : idx);
    }
    int r = ch->closed ? 0 : put_top(L, ch); /* the value is on top now */
    if (r == 1) return 0;
    lua_pop(L, 1);
    if (r == -2) luaL_error(L, "not enough memory");
    return r == 0 ? -2 : -1;
}

void chan_close(lua_State *L, struct chan *ch)
{
    (void)L;
    if (ch->closed) return;
    ch->closed = 1;
    while (ch->recvq.head)
        fire(ch->recvq.head, 0);
    while (ch->sendq.head)
        fire(ch->sendq.head, 0);
}

int chan_len(const struct chan *ch)
{
    return ch->count;
}

void chan_set_take_hook(struct chan *ch, chan_take_fn fn, void *ctx)
{
    ch->take_fn = fn;
    ch->take_ctx = ctx;
}

int chan_set_capacity(lua_State *L, struct chan *ch, int capacity)
{
    if (capacity < ch->count || capacity < 1 || capacity > MAX_CAP) return -1;
    if (capacity == ch->cap) return 0;
    luaL_checkstack(L, 4, "channel");
    lua_createtable(L, capacity, 0);
    if (ch->buf_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ch->buf_ref);
        for (int i = 0; i < ch->count; i++) {
            lua_rawgeti(L, -1, (ch->head + i) % ch->cap + 1);
            lua_rawseti(L, -3, i + 1);
        }
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, ch->buf_ref);
    }
    ch->buf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->head = 0;
    ch->cap = capacity;
    /* new room: parked senders may move in */
    while (ch->count < ch->cap && ch->sendq.head) {
        struct chan_waiter *w = ch->sendq.head;
        push_sender_value(L, w);
        buf_put(L, ch);
        fire(w, 1);
    }
    return 0;
}

/* ---- script API ---- */

static int lnew(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 0);
    luaL_argcheck(L, n >= 0 && n <= MAX_CAP, 1, "capacity out of range");
    chan_new(L, (int)n);
    return 1;
}

static int recv_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct chan_op *op = (struct chan_op *)ctx;
    if (!op->fired) return rt_park(L, recv_k, ctx); /* woken for another reason */
    int ok = op->ok;
    op_put(check_chan(L, 1)->ctx, op);
    if (!ok) lua_pushnil(L); /* nothing was delivered */
    lua_pushboolean(L, ok);
    return 2;
}

static int lreceive(lua_State *L)
{
    struct chan *ch = check_chan(L, 1);
    lua_settop(L, 1);
    int r = try_recv(L, ch);
    if (r >= 0) {
        if (!r) lua_pushnil(L);
        lua_pushboolean(L, r);
        return 2;
    }
    rt_park_check(L);
    luaL_checkstack(L, 4, "channel"); /* room for the delivered value */
    struct chan_op *op = op_get(L, ch->ctx, 1);
    op->w[0].chidx = 1;
    wq_push(&ch->recvq, ch, &op->w[0]);
    return rt_park(L, recv_k, (lua_KContext)op);
}

static int send_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct chan_op *op = (struct chan_op *)ctx;
    if (!op->fired) return rt_park(L, send_k, ctx);
    int ok = op->ok;
    op_put(check_chan(L, 1)->ctx, op);
    if (!ok) return luaL_error(L, "send on closed channel");
    return 0;
}

static int lsend(lua_State *L)
{
    struct chan *ch = check_chan(L, 1);
    lua_settop(L, 2);
    int r = try_send(L, ch, 2);
    if (r == 1) return 0;
    if (r == 0) return luaL_error(L, "send on closed channel");
    if (r == -2) return luaL_error(L, "not enough memory");
    rt_park_check(L);
    luaL_checkstack(L, 4, "channel");
    struct chan_op *op = op_get(L, ch->ctx, 1);
    struct chan_waiter *w = &op->w[0];
    w->is_send = 1;
    w->vidx = 2;
    w->chidx = 1;
    wq_push(&ch->sendq, ch, w);
    return rt_park(L, send_k, (lua_KContext)op);
}

static int lclose(lua_State *L)
{
    chan_close(L, check_chan(L, 1));
    return 0;
}

static int new_case(lua_State *L, int is_send)
{
    check_chan(L, 1);
    lua_settop(L, 2);
    struct chan_case *c = lua_newuserdatauv(L, sizeof *c, 2);
    c->is_send = is_send;
    rt_setmetatable(L, CASE_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    if (is_send) {
        lua_pushvalue(L, 2);
        lua_setiuservalue(L, -2, 2);
    }
    return 1;
}

static int lcase_receive(lua_State *L)
{
    return new_case(L, 0);
}

static int lcase_send(lua_State *L)
{
    return new_case(L, 1);
}

static int llen(lua_State *L)
{
    lua_pushinteger(L, check_chan(L, 1)->count);
    return 1;
}

static int lcap(lua_State *L)
{
    lua_pushinteger(L, check_chan(L, 1)->cap);
    return 1;
}

static int ltostring(lua_State *L)
{
    struct chan *ch = check_chan(L, 1);
    lua_pushfstring(L, "channel (%d/%d%s): %p", ch->count, ch->cap, ch->closed ? ", closed" : "",
                    (void *)ch);
    return 1;
}

/* Reads case i of the cases table at index 1: pushes the case userdata and
 * returns its channel and direction. Raises on a malformed case. */
static struct chan *get_case(lua_State *L, int i, int *is_send)
{
    lua_rawgeti(L, 1, i);
    struct chan_case *c = rt_testudata(L, -1, CASE_MT);
    if (!c)
        luaL_error(L,
                   "select: case %d is not a channel case (use ch:case_receive() or "
                   "ch:case_send(v))",
                   i);
    *is_send = c->is_send;
    lua_getiuservalue(L, -1, 1);
    struct chan *ch = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ch;
}

/* Builds the result table: value (if has_value) is at the top and is
 * consumed; the channel userdata is pushed by the caller at chidx. */
static int select_result(lua_State *L, int chidx, int has_value, int ok)
{
    lua_createtable(L, 0, 3);
    if (has_value) {
        lua_insert(L, -2);
        lua_setfield(L, -2, "value");
    }
    lua_pushvalue(L, chidx);
    lua_setfield(L, -2, "channel");
    lua_pushboolean(L, ok);
    lua_setfield(L, -2, "ok");
    return 1;
}

static int select_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct chan_op *op = (struct chan_op *)ctx;
    if (!op->fired) return rt_park(L, select_k, ctx);
    struct chan_waiter *w = &op->w[op->fired - 1];
    int is_send = w->is_send, ok = op->ok, chidx = w->chidx;
    struct chan *ch = lua_touserdata(L, chidx);
    op_put(ch->ctx, op);
    if (is_send && !ok) return luaL_error(L, "send on closed channel");
    return select_result(L, chidx, !is_send && ok, ok);
}

static int lselect_forever_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    return rt_park(L, lselect_forever_k, ctx);
}

static int lselect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n > MAX_CASES) return luaL_error(L, "select: too many cases (at most %d)", MAX_CASES);
    lua_getfield(L, 1, "default");
    int has_default = lua_toboolean(L, -1);
    lua_pop(L, 1);

    /* pass 1: choose uniformly among the ready cases */
    int chosen = 0, nready = 0;
    struct chan_ctx *cx = NULL;
    for (int i = 1; i <= n; i++) {
        int is_send;
        struct chan *ch = get_case(L, i, &is_send);
        lua_pop(L, 1);
        cx = ch->ctx;
        if (is_send ? send_ready(ch) : recv_ready(ch)) {
            nready++;
            if (rng_next(cx) % (uint64_t)nready == 0) chosen = i;
        }
    }
    if (chosen) {
        int is_send;
        struct chan *ch = get_case(L, chosen, &is_send); /* case at 2 */
        lua_getiuservalue(L, 2, 1);                      /* channel at 3 */
        if (is_send) {
            lua_getiuservalue(L, 2, 2); /* value at 4 */
            int r = try_send(L, ch, 4);
            if (r == 0) return luaL_error(L, "send on closed channel");
            if (r == -2) return luaL_error(L, "not enough memory");
            return select_result(L, 3, 0, 1);
        }
        int r = try_recv(L, ch);
        return select_result(L, 3, r == 1, r == 1);
    }
    if (has_default) {
        lua_createtable(L, 0, 2);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "default");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "ok");
        return 1;
    }

    /* pass 2: park on every case */
    rt_park_check(L);
    if (n == 0) /* select{} blocks forever, as in Go */
        return rt_park(L, lselect_forever_k, 0);
    luaL_checkstack(L, (int)n * 2 + 8, "select");
    struct chan_op *op = op_get(L, cx, (int)n);
    for (int i = 1; i <= n; i++) {
        int is_send;
        struct chan *ch = get_case(L, i, &is_send);
        struct chan_waiter *w = &op->w[i - 1];
        w->is_send = is_send;
        lua_getiuservalue(L, -1, 1);
        w->chidx = lua_gettop(L);
        if (is_send) {
            lua_getiuservalue(L, -2, 2);
            w->vidx = lua_gettop(L);
        }
        lua_remove(L, w->chidx - 1); /* the case userdata */
        w->chidx--;
        if (is_send) w->vidx--;
        wq_push(is_send ? &ch->sendq : &ch->recvq, ch, w);
    }
    return rt_park(L, select_k, (lua_KContext)op);
}

int rt_open_channel(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"send", lsend},
        {"receive", lreceive},
        {"close", lclose},
        {"case_receive", lcase_receive},
        {"case_send", lcase_send},
        {"len", llen},
        {"cap", lcap},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"new", lnew},
        {"select", lselect},
        {NULL, NULL},
    };
    get_ctx(L);
    if (rt_newmetatable(L, CHAN_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lchan_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, ltostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (rt_newmetatable(L, CASE_MT)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}

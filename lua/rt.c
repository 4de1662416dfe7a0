/* The worker-side Lua runtime: state, counting allocator with a memory cap,
 * CPU budget hook, the restricted script environment, require, print
 * routing, tasks (coroutine.spawn), the scheduler and its timers.
 *
 * Layer: lua/. Talks to the outside only through struct rt_backend; must not
 * depend on sockets, files, libwebsockets or broker/.
 *
 * Fatal limits. Hitting the memory cap or the CPU budget sets rt->fatal.
 * From then on the count hook raises in any running Lua code, and every
 * place a script could catch an error (pcall, xpcall, coroutine.resume,
 * coroutine.wrap, coroutine.close, load with a reader) raises again, so the
 * error reaches the scheduler, which ends the run with RT_MEMORY or RT_CPU.
 * Once fatal, the allocator allows an emergency reserve above the cap so the
 * unwinding itself (messages, tracebacks, __close handlers) can allocate.
 *
 * Memory errors. Lua retries a failed allocation once after an emergency full
 * collection; only a failure that survives that retry (or one that Lua does
 * not retry) is fatal, so a script near its cap is not killed for garbage it
 * no longer holds.
 *
 * Tasks and parking. Each task is a Lua thread anchored in the registry. A C
 * function blocks with `return rt_park(L, k, ctx)`: it marks the task parked
 * and yields; the scheduler keeps the task off the runnable queue until
 * rt_task_wake(). A park inside a coroutine that the script drives itself
 * (coroutine.resume/wrap inside a task) yields out of our resume wrapper,
 * which then yields too, so the whole chain parks and is resumed as one.
 * A thread's LUA_EXTRASPACE word says what drives it: 0 = nobody (suspended
 * coroutine), a lua_State pointer = the resume wrapper's thread that is
 * running or parking it, an odd value = a scheduler task (never resumable by
 * the script).
 *
 * Chosen semantics where the contract is silent (see the report):
 * - coroutine.yield() at the top level of a task yields to the other tasks
 *   (the task stays runnable); yielded values are dropped.
 * - An error in a task other than main is written to error output with a
 *   traceback and the other tasks continue; memory/CPU limits end the run.
 * - collectgarbage accepts "collect", "step", "count", "isrunning" only.
 * - setmetatable refuses metatables with __gc: script finalizers would run
 *   at arbitrary points inside the runtime's C code.
 * - getmetatable on a userdata without __metatable returns false. */
#include "lua/rt.h"

#include <errno.h>
#include <lauxlib.h>
#include <malloc.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/channel.h"
#include "lua/errors.h"
#include "lua/json.h"
#include "lua/time.h"

#define RT_DEFAULT_MEM      ((size_t)64 << 20)
#define RT_DEFAULT_INTERVAL 10000u
#define RT_MEM_RESERVE      ((size_t)512 << 10) /* usable above the cap once fatal */
#define RT_ERR_MAX          16384               /* bytes kept of an error message */
#define RT_MODNAMES         256
#define POOL_QUANTUM        16         /* size classes of the small-block pool */
#define POOL_MAX            256        /* largest block from the pool */
#define POOL_SLAB           (64 << 10) /* pool memory comes in slabs of this size */

#define REG_MODULES "rt.modules" /* registry: name -> module table */

/* A tag in a thread's extra space marking a scheduler task. */
#define TAG_TASK ((uintptr_t)1)

enum task_state {
    TASK_NEW,  /* created, never resumed */
    TASK_LIVE, /* resumed at least once */
    TASK_DEAD, /* returned or failed; memory kept until it leaves the queue */
};

struct rt_task {
    lua_State *co;        /* the task's thread; anchored as this userdata's user value */
    int ref;              /* registry reference to this userdata, LUA_NOREF when released */
    int nargs;            /* values above the function on co for the first resume */
    unsigned char state;  /* enum task_state */
    unsigned char queued; /* 1 while on the runnable queue */
    unsigned char parked; /* set by rt_park during the current slice */
    unsigned char main;   /* 1 for the main chunk's task */
    struct rt_task *next; /* runnable queue link */
};

/* One timer slot. Slots are reused; the generation makes stale ids harmless. */
struct rt_tmr {
    int64_t deadline; /* CLOCK_MONOTONIC ns */
    uint64_t seq;     /* creation order, breaks deadline ties (FIFO) */
    rt_timer_fn fn;   /* NULL while the slot is free */
    void *ctx;        /* passed to fn; owned by the caller */
    uint32_t gen;     /* bumped whenever the slot is freed */
    uint32_t pos;     /* index in the heap while armed; next free slot while free */
};

struct rt {
    lua_State *L;              /* main state; runs only the scheduler, never script code */
    size_t mem_used;           /* bytes held by the Lua allocator now */
    size_t mem_limit;          /* cap in bytes */
    uint64_t cpu_limit_ms;     /* CPU budget; 0 = unlimited */
    uint32_t interval;         /* instructions between hook calls */
    int64_t cpu_start_ns;      /* thread CPU time at the start of the run */
    int fatal;                 /* 0, RT_MEMORY or RT_CPU once a limit was hit */
    char fatal_msg[96];        /* text of the fatal error */
    int fail_pending;          /* an allocation failed; Lua may retry it after a GC */
    void *fail_ptr;            /* the failed request (block) */
    size_t fail_size;          /* the failed request (new size) */
    struct rt_task *current;   /* task being resumed now, NULL on the scheduler */
    struct rt_task *main;      /* the main chunk's task */
    struct rt_task *runq_head; /* runnable FIFO (intrusive via rt_task.next) */
    struct rt_task *runq_tail;
    int ran;                    /* rt_run was called */
    int done;                   /* the run is over */
    int status;                 /* enum rt_status once done */
    struct rt_tmr *tmr;         /* timer slots; owned, counted allocator */
    uint32_t tmr_cap;           /* slots allocated */
    uint32_t tmr_free;          /* first free slot, UINT32_MAX if none */
    uint32_t *heap;             /* min-heap of slot indices; owned, counted allocator */
    uint32_t heap_len;          /* armed timers */
    uint64_t tmr_seq;           /* next timer sequence number */
    struct rt_backend be;       /* the broker link; fields NULL when absent */
    rt_output_fn out;           /* print() sink */
    void *out_ctx;              /* its context */
    char *last_error;           /* malloc'd error text of the run, or NULL */
    char *setup_error;          /* malloc'd; a module failed to open in rt_new/rt_add_module */
    char modnames[RT_MODNAMES]; /* "channel, time, ..." for require's error message */
    /* small-block pool of the Lua allocator (see pool_get) */
    void *pool_free[POOL_MAX / POOL_QUANTUM]; /* free blocks by size class, linked
                                                 through their first word */
    struct pool_slab *slabs;                  /* every slab, freed in rt_free */
    char *slab_cur;                           /* carving point in the newest slab */
    size_t slab_left;                         /* bytes left there */
};

static void sched_end(struct rt *rt, int status, const char *msg);

/* ---- clocks ---- */

int64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- allocator ---- */

static void lhook(lua_State *L, lua_Debug *ar);

/* The count hook. While any count hook is set, Lua 5.4 traps every
 * instruction of the thread (a call into luaG_traceexec to count down), which
 * cost 20-40 % of a message-heavy worker's time. So it is set only when there
 * is a CPU budget to check; without one it is set once a limit was hit
 * (set_fatal), on the main thread (new threads copy it) and on the running
 * task, so that the fatal error is raised again in code that keeps running.
 * (A script coroutine nested in that task is not hooked then: the error
 * still propagates through our resume wrapper; without a CPU budget a
 * spinning __close handler is no more than any endless loop, which the wall
 * limit ends.) */
static void hook_thread(struct rt *rt, lua_State *co)
{
    if (rt->cpu_limit_ms || rt->fatal) lua_sethook(co, lhook, LUA_MASKCOUNT, (int)rt->interval);
}

static void set_fatal(struct rt *rt, int kind)
{
    if (rt->fatal) return;
    rt->fatal = kind;
    if (kind == RT_MEMORY)
        snprintf(rt->fatal_msg, sizeof rt->fatal_msg, "memory limit of %zu bytes exceeded",
                 rt->mem_limit);
    else
        snprintf(rt->fatal_msg, sizeof rt->fatal_msg, "CPU time limit of %llu ms exceeded",
                 (unsigned long long)rt->cpu_limit_ms);
    /* lua_sethook only sets fields: safe from inside the allocator. */
    if (!rt->cpu_limit_ms && rt->L) {
        hook_thread(rt, rt->L);
        if (rt->current) hook_thread(rt, rt->current->co);
    }
}

/* ---- small-block pool ----
 *
 * Every received message is a Lua table (two allocations) and often a short
 * string (a third): glibc's malloc and free were about a sixth of the
 * worker's time at 16-byte messages. Blocks of up to POOL_MAX bytes come from
 * per-size-class free lists carved out of POOL_SLAB slabs instead. Lua always
 * passes a block's size when it frees or resizes it, so the size alone tells
 * a pool block from a malloc one. Slabs are kept until rt_free: the pool holds
 * at most the peak of small blocks, which the memory cap bounds (the cap
 * still counts requested sizes). Under AddressSanitizer the pool is off so
 * that Lua's objects keep their redzones. */
struct pool_slab {
    struct pool_slab *next;
};

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#else
#define POOL_ON 1
#endif

static void *pool_get(struct rt *rt, size_t n)
{
    size_t c = (n - 1) / POOL_QUANTUM;
    void *p = rt->pool_free[c];
    if (p) {
        rt->pool_free[c] = *(void **)p;
        return p;
    }
    size_t sz = (c + 1) * POOL_QUANTUM;
    if (rt->slab_left < sz) {
        struct pool_slab *sl = malloc(POOL_SLAB);
        if (!sl) return NULL;
        sl->next = rt->slabs;
        rt->slabs = sl;
        rt->slab_cur = (char *)sl + POOL_QUANTUM;
        rt->slab_left = POOL_SLAB - POOL_QUANTUM;
    }
    p = rt->slab_cur;
    rt->slab_cur += sz;
    rt->slab_left -= sz;
    return p;
}

static void pool_put(struct rt *rt, void *p, size_t n)
{
    size_t c = (n - 1) / POOL_QUANTUM;
    *(void **)p = rt->pool_free[c];
    rt->pool_free[c] = p;
}

/* free() and realloc() for Lua's blocks: the pool up to POOL_MAX bytes. */
static void pool_free_block(struct rt *rt, void *ptr, size_t old)
{
    if (!ptr) return;
    if (POOL_ON && old <= POOL_MAX)
        pool_put(rt, ptr, old);
    else
        free(ptr);
}

static void *pool_realloc(struct rt *rt, void *ptr, size_t old, size_t nsize)
{
    if (!POOL_ON) return realloc(ptr, nsize);
    int small_old = ptr && old <= POOL_MAX, small_new = nsize <= POOL_MAX;
    if (!ptr) return small_new ? pool_get(rt, nsize) : malloc(nsize);
    if (!small_old && !small_new) return realloc(ptr, nsize);
    if (small_old && small_new && (old - 1) / POOL_QUANTUM == (nsize - 1) / POOL_QUANTUM)
        return ptr;
    void *q = small_new ? pool_get(rt, nsize) : malloc(nsize);
    if (!q) return NULL;
    memcpy(q, ptr, old < nsize ? old : nsize);
    pool_free_block(rt, ptr, old);
    return q;
}

static void pool_release(struct rt *rt)
{
    while (rt->slabs) {
        struct pool_slab *sl = rt->slabs;
        rt->slabs = sl->next;
        free(sl);
    }
}

static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rt *rt = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        pool_free_block(rt, ptr, old);
        rt->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        if (rt->fail_pending) {
            /* Lua retries a failed request once after an emergency GC; a
             * second failure of the same request, or a different request
             * (the first one was not retried and is being raised), makes
             * the memory error final. */
            rt->fail_pending = 0;
            if (ptr != rt->fail_ptr || nsize != rt->fail_size) {
                set_fatal(rt, RT_MEMORY);
            } else if (nsize - old > rt->mem_limit ||
                       rt->mem_used > rt->mem_limit - (nsize - old)) {
                set_fatal(rt, RT_MEMORY);
                return NULL;
            }
        }
        size_t limit = rt->mem_limit + (rt->fatal == RT_MEMORY ? RT_MEM_RESERVE : 0);
        if (nsize - old > limit || rt->mem_used > limit - (nsize - old)) {
            if (!rt->fatal) {
                rt->fail_pending = 1;
                rt->fail_ptr = ptr;
                rt->fail_size = nsize;
            }
            return NULL;
        }
    }
    void *p = pool_realloc(rt, ptr, old, nsize);
    if (!p) {
        if (!rt->fatal) {
            rt->fail_pending = 1;
            rt->fail_ptr = ptr;
            rt->fail_size = nsize;
        }
        return NULL;
    }
    rt->mem_used = rt->mem_used - old + nsize;
    return p;
}

/* Allocation for the runtime's own C arrays, counted against the cap. A
 * failure here is final (nothing retries it). */
static void *rt_xrealloc(struct rt *rt, void *p, size_t old, size_t n)
{
    void *q = lalloc(rt, p, old, n);
    if (!q && n) {
        rt->fail_pending = 0;
        set_fatal(rt, RT_MEMORY);
    }
    return q;
}

int rt_cpu_budgeted(const struct rt *rt)
{
    return rt->cpu_limit_ms != 0;
}

size_t rt_mem_used(struct rt *rt)
{
    return rt->mem_used;
}

struct rt *rt_from_lua(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

lua_State *rt_lua(struct rt *rt)
{
    return rt->L;
}

/* Raises the fatal error in L (never returns). */
static int raise_fatal(lua_State *L, struct rt *rt)
{
    lua_pushstring(L, rt->fatal_msg);
    return lua_error(L);
}

/* After a protected call: makes memory errors final and re-raises fatal
 * errors so that no script-level handler can swallow them. */
static void check_fatal(lua_State *L, int status)
{
    struct rt *rt = rt_from_lua(L);
    if (status == LUA_ERRMEM) set_fatal(rt, RT_MEMORY);
    if (rt->fatal) raise_fatal(L, rt);
}

/* ---- CPU budget ---- */

static void lhook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct rt *rt = rt_from_lua(L);
    if (!rt->fatal && rt->cpu_limit_ms) {
        int64_t used = cpu_now_ns() - rt->cpu_start_ns;
        if (used > (int64_t)rt->cpu_limit_ms * 1000000) set_fatal(rt, RT_CPU);
    }
    if (rt->fatal) raise_fatal(L, rt);
}

/* ---- output ---- */

static void default_output(void *ctx, int is_err, const char *s, size_t n)
{
    (void)ctx;
    FILE *f = is_err ? stderr : stdout;
    fwrite(s, 1, n, f);
    fflush(f);
}

void rt_set_output(struct rt *rt, rt_output_fn fn, void *ctx)
{
    rt->out = fn ? fn : default_output;
    rt->out_ctx = fn ? ctx : NULL;
}

static int lprint(lua_State *L)
{
    struct rt *rt = rt_from_lua(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    rt->out(rt->out_ctx, 0, s, len);
    return 0;
}

/* ---- timers ---- */

static int tmr_less(const struct rt *rt, uint32_t a, uint32_t b)
{
    const struct rt_tmr *x = &rt->tmr[a], *y = &rt->tmr[b];
    return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void heap_set(struct rt *rt, uint32_t pos, uint32_t slot)
{
    rt->heap[pos] = slot;
    rt->tmr[slot].pos = pos;
}

static void heap_up(struct rt *rt, uint32_t pos)
{
    uint32_t slot = rt->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!tmr_less(rt, slot, rt->heap[parent])) break;
        heap_set(rt, pos, rt->heap[parent]);
        pos = parent;
    }
    heap_set(rt, pos, slot);
}

static void heap_down(struct rt *rt, uint32_t pos)
{
    uint32_t slot = rt->heap[pos];
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= rt->heap_len) break;
        if (c + 1 < rt->heap_len && tmr_less(rt, rt->heap[c + 1], rt->heap[c])) c++;
        if (!tmr_less(rt, rt->heap[c], slot)) break;
        heap_set(rt, pos, rt->heap[c]);
        pos = c;
    }
    heap_set(rt, pos, slot);
}

/* Removes the timer at heap position pos and frees its slot. */
static void heap_remove(struct rt *rt, uint32_t pos)
{
    uint32_t slot = rt->heap[pos];
    rt->heap_len--;
    if (pos < rt->heap_len) {
        uint32_t moved = rt->heap[rt->heap_len];
        heap_set(rt, pos, moved);
        heap_down(rt, pos);
        heap_up(rt, rt->tmr[moved].pos);
    }
    struct rt_tmr *t = &rt->tmr[slot];
    t->fn = NULL;
    t->ctx = NULL;
    t->gen++;
    t->pos = rt->tmr_free;
    rt->tmr_free = slot;
}

static int tmr_grow(struct rt *rt)
{
    uint32_t ncap = rt->tmr_cap ? rt->tmr_cap * 2 : 16;
    if (ncap > (1u << 26)) {
        set_fatal(rt, RT_MEMORY);
        return -1;
    }
    struct rt_tmr *t = rt_xrealloc(rt, NULL, 0, (size_t)ncap * sizeof *t);
    if (!t) return -1;
    uint32_t *h = rt_xrealloc(rt, NULL, 0, (size_t)ncap * sizeof *h);
    if (!h) {
        rt_xrealloc(rt, t, (size_t)ncap * sizeof *t, 0);
        return -1;
    }
    if (rt->tmr_cap) {
        memcpy(t, rt->tmr, rt->tmr_cap * sizeof *t);
        memcpy(h, rt->heap, rt->heap_len * sizeof *h);
        rt_xrealloc(rt, rt->tmr, rt->tmr_cap * sizeof *t, 0);
        rt_xrealloc(rt, rt->heap, rt->tmr_cap * sizeof *h, 0);
    }
    rt->tmr = t;
    rt->heap = h;
    for (uint32_t i = rt->tmr_cap; i < ncap; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].pos = i + 1 < ncap ? i + 1 : rt->tmr_free;
    }
    rt->tmr_free = rt->tmr_cap;
    rt->tmr_cap = ncap;
    return 0;
}

uint64_t rt_timer_add(struct rt *rt, int64_t deadline_ns, rt_timer_fn fn, void *ctx)
{
    if (rt->tmr_free == UINT32_MAX && tmr_grow(rt) < 0) return 0;
    uint32_t slot = rt->tmr_free;
    struct rt_tmr *t = &rt->tmr[slot];
    rt->tmr_free = t->pos;
    t->deadline = deadline_ns;
    t->seq = rt->tmr_seq++;
    t->fn = fn;
    t->ctx = ctx;
    rt->heap[rt->heap_len] = slot;
    t->pos = rt->heap_len++;
    heap_up(rt, t->pos);
    return ((uint64_t)t->gen << 32) | (uint64_t)(slot + 1);
}

void rt_timer_cancel(struct rt *rt, uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    if (slot == 0 || slot > rt->tmr_cap) return;
    slot--;
    struct rt_tmr *t = &rt->tmr[slot];
    if (!t->fn || t->gen != (uint32_t)(id >> 32)) return;
    heap_remove(rt, t->pos);
}

/* Runs every timer due at `now`. Returns how many ran. */
static int run_timers(struct rt *rt, int64_t now)
{
    int n = 0;
    while (rt->heap_len && rt->tmr[rt->heap[0]].deadline <= now && !rt->done) {
        struct rt_tmr *t = &rt->tmr[rt->heap[0]];
        rt_timer_fn fn = t->fn;
        void *ctx = t->ctx;
        heap_remove(rt, 0);
        fn(rt, ctx);
        n++;
    }
    return n;
}

/* ---- tasks ---- */

static uintptr_t *xspace(lua_State *th)
{
    return (uintptr_t *)lua_getextraspace(th);
}

struct rt_task *rt_current_task(lua_State *L)
{
    return rt_from_lua(L)->current;
}

void rt_task_wake(struct rt *rt, struct rt_task *t)
{
    if (!t || t->queued || t->state == TASK_DEAD) return;
    t->queued = 1;
    t->next = NULL;
    if (rt->runq_tail)
        rt->runq_tail->next = t;
    else
        rt->runq_head = t;
    rt->runq_tail = t;
}

static struct rt_task *runq_pop(struct rt *rt)
{
    struct rt_task *t = rt->runq_head;
    if (t) {
        rt->runq_head = t->next;
        if (!rt->runq_head) rt->runq_tail = NULL;
        t->next = NULL;
        t->queued = 0;
    }
    return t;
}

/* Creates a task from the function and nargs arguments on top of L (popped)
 * and queues it. Raises on memory errors. */
static struct rt_task *task_new(lua_State *L, int nargs)
{
    struct rt *rt = rt_from_lua(L);
    luaL_checkstack(L, 3, "task");
    struct rt_task *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    t->ref = LUA_NOREF;
    lua_State *co = lua_newthread(L);
    lua_setiuservalue(L, -2, 1);
    t->co = co;
    t->nargs = nargs;
    t->state = TASK_NEW;
    *xspace(co) = TAG_TASK;
    hook_thread(rt, co);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_checkstack(co, nargs + 1)) luaL_error(L, "too many arguments for a task");
    lua_xmove(L, co, nargs + 1);
    rt_task_wake(rt, t);
    return t;
}

static void task_release(struct rt *rt, struct rt_task *t)
{
    t->state = TASK_DEAD;
    if (!t->queued && t->ref != LUA_NOREF) {
        luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
        t->ref = LUA_NOREF;
    }
}

static int lspawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    task_new(L, lua_gettop(L) - 1);
    return 0;
}

static const char *park_problem(struct rt *rt, lua_State *L)
{
    struct rt_task *t = rt->current;
    if (!t) return "blocking call outside of a task";
    lua_State *th = L;
    for (;;) {
        if (!lua_isyieldable(th))
            return "attempt to block across a C-call boundary (inside a metamethod, "
                   "iterator or library callback)";
        if (th == t->co) return NULL;
        uintptr_t x = *xspace(th);
        if (x == 0 || (x & TAG_TASK))
            return "blocking call in a coroutine not run by the scheduler";
        th = (lua_State *)x;
    }
}

void rt_park_check(lua_State *L)
{
    const char *why = park_problem(rt_from_lua(L), L);
    if (why) luaL_error(L, "%s", why);
}

int rt_park(lua_State *L, lua_KFunction k, lua_KContext ctx)
{
    struct rt *rt = rt_from_lua(L);
    rt_park_check(L);
    rt->current->parked = 1;
    return lua_yieldk(L, 0, ctx, k);
}

/* ---- coroutine wrappers (park propagation, fatal errors) ---- */

static int co_cont(lua_State *L, int status, lua_KContext ctx);

/* Resumes co with nargs values from L's top; `wrap` selects coroutine.wrap
 * semantics (raise on error, no leading boolean). */
static int co_step(lua_State *L, lua_State *co, int nargs, int wrap)
{
    struct rt *rt = rt_from_lua(L);
    int nres = 0;
    *xspace(co) = (uintptr_t)L;
    int st = lua_resume(co, L, nargs, &nres);
    if (st == LUA_YIELD && rt->current && rt->current->parked && !rt->fatal) {
        /* A blocking call inside co: park this thread too; the scheduler
         * resumes us in co_cont, which resumes co. */
        lua_pop(co, nres);
        return lua_yieldk(L, 0, wrap, co_cont);
    }
    *xspace(co) = 0;
    check_fatal(L, st);
    if (st == LUA_OK || st == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }
        if (!wrap) lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + !wrap;
    }
    lua_xmove(co, L, 1); /* error object */
    if (wrap) {
        int cst = lua_resetthread(co); /* runs its pending __close handlers */
        lua_settop(co, 0);
        check_fatal(L, cst);
        if (lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int co_cont(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int wrap = (int)ctx;
    lua_State *co = lua_tothread(L, wrap ? lua_upvalueindex(1) : 1);
    return co_step(L, co, 0, wrap);
}

/* Refusal text when the script may not resume or close co, else NULL. */
static const char *co_busy(lua_State *co)
{
    uintptr_t x = *xspace(co);
    if (x == 0) return NULL;
    if (x & TAG_TASK) return "cannot resume or close a task (only the scheduler runs tasks)";
    return "cannot resume non-suspended coroutine";
}

static int lco_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    const char *busy = co_busy(co);
    if (busy || co == L) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, busy ? busy : "cannot resume non-suspended coroutine");
        return 2;
    }
    int n = lua_gettop(L) - 1;
    if (!lua_checkstack(co, n)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "too many arguments to resume");
        return 2;
    }
    lua_xmove(L, co, n);
    return co_step(L, co, n, 0);
}

static int lco_auxwrap(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    const char *busy = co_busy(co);
    if (busy || co == L)
        return luaL_error(L, "%s", busy ? busy : "cannot resume non-suspended coroutine");
    int n = lua_gettop(L);
    if (!lua_checkstack(co, n)) return luaL_error(L, "too many arguments to resume");
    lua_xmove(L, co, n);
    return co_step(L, co, n, 1);
}

static int lco_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, lco_auxwrap, 1);
    return 1;
}

static int lco_close(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    const char *busy = co_busy(co);
    if (busy) return luaL_error(L, "%s", busy);
    lua_Debug ar;
    int st = lua_status(co);
    if (co == L || (st == LUA_OK && lua_getstack(co, 0, &ar)))
        return luaL_error(L, "cannot close a %s coroutine", co == L ? "running" : "normal");
    st = lua_resetthread(co);
    check_fatal(L, st);
    if (st == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
}

/* ---- base library replacements ---- */

static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    check_fatal(L, status);
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int lpcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

/* Stands between xpcall and the script's message handler: once a limit was
 * hit, the handler is not run at all (Lua would call it again after an error
 * raised inside it, with hooks off, so a spinning handler could dodge the
 * CPU budget); the error value passes through unchanged. */
static int lxpcall_handler(lua_State *L)
{
    if (rt_from_lua(L)->fatal) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int lxpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, lxpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

/* load(chunk [, chunkname [, mode [, env]]]): text only. */
static int lload(lua_State *L)
{
    const char *mode = luaL_optstring(L, 3, "t");
    if (strcmp(mode, "t") != 0 && strcmp(mode, "bt") != 0 && strcmp(mode, "b") != 0)
        return luaL_argerror(L, 3, "invalid mode");
    if (strcmp(mode, "t") != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "binary chunks are not allowed");
        return 2;
    }
    if (lua_gettop(L) < 3) lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    check_fatal(L, LUA_OK); /* a reader function may have swallowed a fatal error */
    return lua_gettop(L);
}

static int lcollectgarbage(lua_State *L)
{
    static const char *const opts[] = {"collect", "step", "count", "isrunning", NULL};
    int o = luaL_checkoption(L, 1, "collect", opts);
    switch (o) {
    case 0:
        lua_gc(L, LUA_GCCOLLECT);
        lua_pushinteger(L, 0);
        return 1;
    case 1: {
        int step = (int)luaL_optinteger(L, 2, 0);
        lua_pushboolean(L, lua_gc(L, LUA_GCSTEP, step));
        return 1;
    }
    case 2: {
        int k = lua_gc(L, LUA_GCCOUNT);
        int b = lua_gc(L, LUA_GCCOUNTB);
        lua_pushnumber(L, (lua_Number)k + ((lua_Number)b / 1024));
        return 1;
    }
    default:
        lua_pushboolean(L, lua_gc(L, LUA_GCISRUNNING));
        return 1;
    }
}

static int lro_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table");
}

/* 1 if the table at idx is a read-only proxy (ours, or another module's
 * built the same way: a protected metatable with a C __newindex). */
static int is_readonly(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    int ro = 0;
    if (lua_getfield(L, -1, "__metatable") != LUA_TNIL) {
        lua_getfield(L, -2, "__newindex");
        ro = lua_iscfunction(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return ro;
}

static int lrawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (is_readonly(L, 1)) return luaL_error(L, "attempt to modify a read-only table");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

static int lsetmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    if (t == LUA_TTABLE) {
        if (lua_getfield(L, 2, "__gc") != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in scripts");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int lgetmetatable(lua_State *L)
{
    luaL_checkany(L, 1);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return 1;
    if (lua_type(L, 1) == LUA_TUSERDATA)
        lua_pushboolean(L, 0); /* runtime objects keep their metatables private */
    else
        lua_pushvalue(L, -1);
    return 1;
}

static int lrequire(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    struct rt *rt = rt_from_lua(L);
    return luaL_error(L, "module '%s' not found: only %s can be required", name, rt->modnames);
}

/* ---- read-only tables ---- */

static int lro_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (!lua_getmetatable(L, 1) || lua_getfield(L, -1, "__index") != LUA_TTABLE) return 0;
    lua_pushvalue(L, 2);
    if (lua_next(L, -2)) return 2;
    return 0;
}

static int lro_pairs(lua_State *L)
{
    lua_pushcfunction(L, lro_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the plain table at the top with a read-only proxy, first freezing
 * plain tables in its fields (visited: table at vis_idx). A table that is
 * already a read-only proxy (made by a module) is re-wrapped around the table
 * it stands for, so that only our proxy, whose pairs() never hands out the
 * real table, reaches scripts. Other tables with a metatable are left as
 * they are. */
static void make_readonly(lua_State *L, int vis_idx)
{
    luaL_checkstack(L, 8, "read-only table");
    int real = lua_gettop(L);
    if (lua_getmetatable(L, real)) {
        lua_getfield(L, -1, "__newindex");
        int ours = lua_tocfunction(L, -1) == lro_newindex;
        lua_pop(L, 1);
        if (!ours && is_readonly(L, real) && lua_getfield(L, -1, "__index") == LUA_TTABLE) {
            lua_replace(L, real);
            lua_pop(L, 1);
        } else {
            lua_settop(L, real);
            return;
        }
    }
    if (lua_rawgetp(L, vis_idx, lua_topointer(L, real)) == LUA_TTABLE) {
        lua_replace(L, real);
        return;
    }
    lua_pop(L, 1);
    lua_newtable(L); /* proxy */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, vis_idx, lua_topointer(L, real));
    lua_pushnil(L);
    while (lua_next(L, real)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            make_readonly(L, vis_idx);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, real);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_createtable(L, 0, 4); /* proxy metatable */
    lua_pushvalue(L, real);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, real);
}

static void freeze_top(lua_State *L)
{
    lua_newtable(L);
    lua_insert(L, -2);
    make_readonly(L, lua_gettop(L) - 1);
    lua_remove(L, -2);
}

/* Publishes the value at the top (popped) as global `name` and module. */
static void publish(lua_State *L, const char *name, int as_module)
{
    struct rt *rt = rt_from_lua(L);
    if (lua_type(L, -1) == LUA_TTABLE) freeze_top(L);
    if (as_module) {
        lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, name);
        lua_pop(L, 1);
        size_t used = strlen(rt->modnames);
        if (used + strlen(name) + 3 < sizeof rt->modnames)
            snprintf(rt->modnames + used, sizeof rt->modnames - used, "%s%s", used ? ", " : "",
                     name);
    }
    lua_setglobal(L, name);
}

/* ---- environment ---- */

static void remove_fields(lua_State *L, int idx, const char *const *names)
{
    for (; *names; names++) {
        lua_pushnil(L);
        lua_setfield(L, idx, *names);
    }
}

static void set_cfield(lua_State *L, int idx, const char *name, lua_CFunction f)
{
    lua_pushcfunction(L, f);
    lua_setfield(L, idx > 0 ? idx : idx - 1, name);
}

/* Runs in protected mode on the main state: builds the environment. */
static int lsetup(lua_State *L)
{
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_MODULES);

    /* base */
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    int g = lua_gettop(L);
    static const char *const base_drop[] = {"dofile", "loadfile", "warn", NULL};
    remove_fields(L, g, base_drop);
    lua_getfield(L, g, "load");
    lua_pushcclosure(L, lload, 1);
    lua_setfield(L, g, "load");
    set_cfield(L, g, "print", lprint);
    set_cfield(L, g, "pcall", lpcall);
    set_cfield(L, g, "xpcall", lxpcall);
    set_cfield(L, g, "rawset", lrawset);
    set_cfield(L, g, "setmetatable", lsetmetatable);
    set_cfield(L, g, "getmetatable", lgetmetatable);
    set_cfield(L, g, "collectgarbage", lcollectgarbage);
    set_cfield(L, g, "require", lrequire);
    lua_pop(L, 1);

    /* coroutine */
    luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 0);
    set_cfield(L, -1, "resume", lco_resume);
    set_cfield(L, -1, "wrap", lco_wrap);
    set_cfield(L, -1, "close", lco_close);
    set_cfield(L, -1, "spawn", lspawn);
    publish(L, LUA_COLIBNAME, 0);

    /* string: no dump; the string metatable is hidden behind a read-only
     * stand-in whose __index is the (read-only) string library */
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    int real_string = lua_gettop(L);
    lua_pushvalue(L, real_string);
    freeze_top(L);
    int string_proxy = lua_gettop(L);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1); /* the real string metatable */
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, string_proxy);
    lua_setfield(L, -2, "__index");
    freeze_top(L);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_pushvalue(L, string_proxy);
    lua_setglobal(L, LUA_STRLIBNAME);
    lua_settop(L, real_string - 1);

    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
    publish(L, LUA_TABLIBNAME, 0);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
    publish(L, LUA_MATHLIBNAME, 0);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
    publish(L, LUA_UTF8LIBNAME, 0);

    /* os: time and clock only */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -2, "time");
    lua_setfield(L, -2, "time");
    lua_getfield(L, -2, "clock");
    lua_setfield(L, -2, "clock");
    publish(L, LUA_OSLIBNAME, 0);
    lua_pop(L, 1);

    /* the runtime's modules */
    static const struct {
        const char *name;
        lua_CFunction open;
    } mods[] = {
        {"channel", rt_open_channel},
        {"time", rt_open_time},
        {"errors", rt_open_errors},
        {"json", rt_open_json},
    };
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        lua_pushcfunction(L, mods[i].open);
        lua_call(L, 0, 1);
        publish(L, mods[i].name, 1);
    }
    return 0;
}

static char *dup_text(const char *s, size_t n)
{
    if (n > RT_ERR_MAX) n = RT_ERR_MAX;
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Stores the string (or a description) at the top of L as *dst; pops it. */
static void take_error(lua_State *L, char **dst)
{
    size_t n = 0;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    free(*dst);
    *dst = s ? dup_text(s, n) : dup_text("(error object is not a string)", 30);
    lua_pop(L, 1);
}

struct rt *rt_new(const struct rt_config *cfg)
{
    struct rt *rt = calloc(1, sizeof *rt);
    if (!rt) return NULL;
    rt->mem_limit = cfg && cfg->mem_limit ? cfg->mem_limit : RT_DEFAULT_MEM;
    rt->cpu_limit_ms = cfg ? cfg->cpu_limit_ms : 0;
    rt->interval = cfg && cfg->hook_interval ? cfg->hook_interval : RT_DEFAULT_INTERVAL;
    if (rt->interval > (uint32_t)INT32_MAX) rt->interval = INT32_MAX;
    rt->tmr_free = UINT32_MAX;
    rt->out = default_output;
    rt->cpu_start_ns = cpu_now_ns();
    /* os.time{...} consults the time zone; load it now, before any sandbox
     * forbids opening files. */
    tzset();
    /* Received messages are Lua strings that come and go by the thousand:
     * keep freed heap memory (and take large strings from the heap, not
     * from fresh mmaps) instead of returning it to the kernel and faulting
     * it in again for the next message. The cap is lalloc's accounting. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    rt->L = lua_newstate(lalloc, rt);
    if (!rt->L) {
        free(rt);
        return NULL;
    }
    *xspace(rt->L) = 0; /* new threads copy the main thread's word */
    lua_setwarnf(rt->L, NULL, NULL);
    hook_thread(rt, rt->L);
    lua_pushcfunction(rt->L, lsetup);
    if (lua_pcall(rt->L, 0, 0, 0) != LUA_OK) {
        lua_close(rt->L);
        free(rt);
        return NULL;
    }
    return rt;
}

static int lmodule_add(lua_State *L)
{
    const char *name = lua_tostring(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    publish(L, name, 1);
    return 0;
}

void rt_add_module(struct rt *rt, const char *name, lua_CFunction open)
{
    lua_State *L = rt->L;
    lua_pushcfunction(L, lmodule_add);
    lua_pushstring(L, name);
    lua_pushcfunction(L, open);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        if (!rt->setup_error)
            take_error(L, &rt->setup_error);
        else
            lua_pop(L, 1);
    }
}

void rt_set_backend(struct rt *rt, const struct rt_backend *be)
{
    if (be)
        rt->be = *be;
    else
        memset(&rt->be, 0, sizeof rt->be);
}

const char *rt_last_error(struct rt *rt)
{
    return rt->last_error ? rt->last_error : "";
}

void rt_free(struct rt *rt)
{
    if (!rt) return;
    lua_close(rt->L);
    if (rt->tmr) lalloc(rt, rt->tmr, rt->tmr_cap * sizeof *rt->tmr, 0);
    if (rt->heap) lalloc(rt, rt->heap, rt->tmr_cap * sizeof *rt->heap, 0);
    pool_release(rt);
    free(rt->last_error);
    free(rt->setup_error);
    free(rt);
}

/* ---- scheduler ---- */

static void sched_end(struct rt *rt, int status, const char *msg)
{
    if (rt->done) return;
    rt->done = 1;
    rt->status = status;
    if (msg) {
        free(rt->last_error);
        rt->last_error = dup_text(msg, strlen(msg));
    }
}

/* Protected helper: (thread, error value) -> message with traceback. */
static int lfmt_error(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    const char *msg = luaL_tolstring(L, 2, NULL);
    luaL_traceback(L, co, msg, 0);
    return 1;
}

/* Pushes on the main state the message (msg, or else the error object on top
 * of co, which is then popped) with the traceback of the failed thread co.
 * Never raises; pushes a fallback text when formatting fails. */
static void format_error(struct rt *rt, lua_State *co, const char *msg)
{
    lua_State *L = rt->L;
    if (!lua_checkstack(L, 4) || !lua_checkstack(co, 1)) {
        lua_pushstring(L, msg ? msg : "(no memory to format the error)");
        return;
    }
    lua_pushcfunction(L, lfmt_error);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    if (msg)
        lua_pushstring(L, msg);
    else
        lua_xmove(co, L, 1);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        lua_pushstring(L, msg ? msg : "(error while formatting an error)");
    }
}

static void end_fatal(struct rt *rt, lua_State *co)
{
    if (co) {
        format_error(rt, co, rt->fatal_msg);
        const char *s = lua_tostring(rt->L, -1);
        sched_end(rt, rt->fatal, s ? s : rt->fatal_msg);
        lua_pop(rt->L, 1);
    } else {
        sched_end(rt, rt->fatal, rt->fatal_msg);
    }
}

static void task_resume(struct rt *rt, struct rt_task *t)
{
    lua_State *co = t->co;
    int nargs = 0, nres = 0;
    if (t->state == TASK_NEW) {
        nargs = t->nargs;
        t->state = TASK_LIVE;
    }
    rt->current = t;
    t->parked = 0;
    int st = lua_resume(co, rt->L, nargs, &nres);
    rt->current = NULL;
    if (st == LUA_ERRMEM) set_fatal(rt, RT_MEMORY);
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        if (rt->fatal) {
            end_fatal(rt, NULL);
            return;
        }
        if (!t->parked) rt_task_wake(rt, t); /* coroutine.yield() in a task: let others run */
        return;
    }
    if (st == LUA_OK) {
        task_release(rt, t);
        if (rt->fatal)
            end_fatal(rt, NULL);
        else if (t->main)
            sched_end(rt, RT_OK, NULL);
        return;
    }
    if (rt->fatal) {
        end_fatal(rt, co);
        task_release(rt, t);
        return;
    }
    format_error(rt, co, NULL);
    if (rt->fatal) {
        lua_pop(rt->L, 1);
        end_fatal(rt, NULL);
    } else if (t->main) {
        sched_end(rt, RT_ERROR, lua_tostring(rt->L, -1));
        lua_pop(rt->L, 1);
    } else {
        size_t n;
        const char *s = lua_tolstring(rt->L, -1, &n);
        rt->out(rt->out_ctx, 1, "error in task: ", 15);
        rt->out(rt->out_ctx, 1, s, n);
        rt->out(rt->out_ctx, 1, "\n", 1);
        lua_pop(rt->L, 1);
    }
    task_release(rt, t);
}

static void sleep_until(int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* The scheduler loop; runs protected on the main state with the main
 * function as argument 1. */
static int lsched(lua_State *L)
{
    struct rt *rt = rt_from_lua(L);
    rt->main = task_new(L, 0);
    rt->main->main = 1;
    while (!rt->done) {
        /* one round: the tasks runnable now, in order */
        struct rt_task *last = rt->runq_tail;
        while (rt->runq_head && !rt->done) {
            struct rt_task *t = runq_pop(rt);
            int was_last = t == last;
            if (t->state == TASK_DEAD)
                task_release(rt, t);
            else
                task_resume(rt, t);
            if (was_last) break;
        }
        if (rt->done) break;
        if (rt->fatal) {
            end_fatal(rt, NULL);
            break;
        }
        if (rt->heap_len) run_timers(rt, rt_now_ns());
        if (rt->be.poll && rt->be.poll(rt->be.ctx, L) < 0) {
            sched_end(rt, RT_ERROR, "connection to the broker lost");
            break;
        }
        if (rt->runq_head || rt->done) continue;
        int64_t next = rt->heap_len ? rt->tmr[rt->heap[0]].deadline : -1;
        if (rt->be.wait) {
            if (rt->be.wait(rt->be.ctx, L, next) < 0) {
                sched_end(rt, RT_ERROR, "connection to the broker lost");
                break;
            }
        } else if (next >= 0) {
            sleep_until(next);
        } else {
            sched_end(rt, RT_ERROR, "deadlock: all tasks are blocked");
            break;
        }
        if (rt->heap_len) run_timers(rt, rt_now_ns());
    }
    if (rt->fatal && rt->status != rt->fatal) {
        rt->done = 0;
        end_fatal(rt, NULL);
    }
    return 0;
}

static int lfinish(lua_State *L)
{
    struct rt *rt = rt_from_lua(L);
    rt->be.finish(rt->be.ctx, L);
    return 0;
}

int rt_run(struct rt *rt, const char *chunkname, const char *src, size_t len)
{
    lua_State *L = rt->L;
    if (rt->ran) {
        sched_end(rt, RT_ERROR, "rt_run called twice");
        return RT_ERROR;
    }
    rt->ran = 1;
    rt->cpu_start_ns = cpu_now_ns();
    if (rt->setup_error) {
        sched_end(rt, RT_ERROR, rt->setup_error);
    } else {
        int st = luaL_loadbufferx(L, src, len, chunkname, "t");
        if (st == LUA_ERRMEM) set_fatal(rt, RT_MEMORY);
        if (rt->fatal) {
            lua_pop(L, 1);
            end_fatal(rt, NULL);
        } else if (st != LUA_OK) {
            const char *m = lua_tostring(L, -1);
            sched_end(rt, RT_ERROR, m ? m : "cannot load the script");
            lua_pop(L, 1);
        } else {
            lua_pushcfunction(L, lsched);
            lua_insert(L, -2);
            st = lua_pcall(L, 1, 0, 0);
            if (st == LUA_ERRMEM) set_fatal(rt, RT_MEMORY);
            if (st != LUA_OK) {
                if (rt->fatal) {
                    rt->done = 0;
                    end_fatal(rt, NULL);
                } else {
                    const char *m = lua_tostring(L, -1);
                    rt->done = 0;
                    sched_end(rt, RT_ERROR, m ? m : "runtime error in the scheduler");
                }
                lua_pop(L, 1);
            } else if (!rt->done) {
                sched_end(rt, RT_ERROR, "scheduler stopped unexpectedly");
            }
        }
    }
    rt->current = NULL;
    if (rt->be.finish) {
        lua_pushcfunction(L, lfinish);
        if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    return rt->status;
}

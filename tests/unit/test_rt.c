/* CUnit suite for the worker runtime driven from C (lua/rt.c, lua/channel.c):
 * run outcomes (ok, error with traceback, memory cap, CPU budget, deadlock),
 * print routing, modules, a fake backend feeding a channel, and the timer
 * heap. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua/channel.h"
#include "lua/rt.h"

static int run_script(const struct rt_config *cfg, const char *src, char *err, size_t errlen)
{
    struct rt *rt = rt_new(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    int st = rt_run(rt, "=test", src, strlen(src));
    if (err) {
        strncpy(err, rt_last_error(rt), errlen - 1);
        err[errlen - 1] = '\0';
    }
    rt_free(rt);
    return st;
}

static void test_ok(void)
{
    CU_ASSERT_EQUAL(run_script(NULL, "local x = 1 + 1 assert(x == 2)", NULL, 0), RT_OK);
    /* other tasks are dropped when main returns */
    CU_ASSERT_EQUAL(run_script(NULL,
                               "coroutine.spawn(function() channel.new():receive() end)\n"
                               "coroutine.spawn(function() while true do time.sleep(0) end end)",
                               NULL, 0),
                    RT_OK);
}

static void test_error_traceback(void)
{
    char err[2048];
    int st = run_script(NULL, "local function f() error('boom') end\nf()", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "test:1: boom"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stack traceback"));
    /* a syntax error is reported at load */
    st = run_script(NULL, "local = 1", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "test:1:"));
    /* a binary chunk is refused */
    st = run_script(NULL, "\033Lua\x54", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "binary"));
}

static void test_memory(void)
{
    struct rt_config cfg = {.mem_limit = 8u << 20};
    char err[2048];
    int st = run_script(&cfg, "local t = {} while true do t[#t+1] = {} end", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_MEMORY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "memory limit of 8388608 bytes exceeded"));
    st = run_script(&cfg, "print(pcall(string.rep, 'x', 1 << 28)) while true do end", err,
                    sizeof err);
    CU_ASSERT_EQUAL(st, RT_MEMORY);
    /* the cap is respected while running: a fresh runtime reports its use */
    struct rt *rt = rt_new(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    CU_ASSERT(rt_mem_used(rt) > 0 && rt_mem_used(rt) < cfg.mem_limit);
    rt_free(rt);
}

static void test_cpu(void)
{
    struct rt_config cfg = {.cpu_limit_ms = 100, .hook_interval = 1000};
    char err[2048];
    int st = run_script(&cfg, "while true do end", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_CPU);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CPU time limit of 100 ms exceeded"));
    st = run_script(&cfg, "while true do pcall(function() while true do end end) end", err,
                    sizeof err);
    CU_ASSERT_EQUAL(st, RT_CPU);
    st = run_script(&cfg,
                    "local co = coroutine.wrap(function() while true do end end)\n"
                    "print(pcall(co))",
                    err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_CPU);
}

static void test_deadlock(void)
{
    char err[2048];
    int st = run_script(NULL, "channel.new():receive()", err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadlock"));
    st = run_script(NULL,
                    "local c = channel.new() coroutine.spawn(function() c:send(1) end)\n"
                    "c:receive() c:receive()",
                    err, sizeof err);
    CU_ASSERT_EQUAL(st, RT_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadlock"));
}

/* ---- print routing ---- */

struct sink {
    char out[256];  /* normal output */
    char err[1024]; /* error output */
};

static void sink_write(void *ctx, int is_err, const char *s, size_t n)
{
    struct sink *k = ctx;
    char *dst = is_err ? k->err : k->out;
    size_t cap = is_err ? sizeof k->err : sizeof k->out;
    size_t used = strlen(dst);
    if (used + n >= cap) n = cap - used - 1;
    memcpy(dst + used, s, n);
    dst[used + n] = '\0';
}

static void test_output(void)
{
    struct sink k = {{0}, {0}};
    struct rt *rt = rt_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    rt_set_output(rt, sink_write, &k);
    const char *src = "print('a', 1, nil, true)\n"
                      "coroutine.spawn(function() error('task oops') end)\n"
                      "time.sleep(0)";
    CU_ASSERT_EQUAL(rt_run(rt, "=out", src, strlen(src)), RT_OK);
    CU_ASSERT_STRING_EQUAL(k.out, "a\t1\tnil\ttrue\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(k.err, "task oops"));
    CU_ASSERT_PTR_NOT_NULL(strstr(k.err, "stack traceback"));
    rt_free(rt);
}

/* ---- a fake backend feeding a channel, and a C module ---- */

struct fake {
    struct chan *ch; /* channel handed to the script */
    int ref;         /* registry anchor of that channel */
    int polls;       /* poll() calls */
    int waits;       /* wait() calls */
    int finished;    /* finish() calls */
    int sent;        /* values offered */
    int takes;       /* take-hook calls */
};

static struct fake *g_fake;

static void fake_take(void *ctx, struct chan *ch)
{
    (void)ch;
    ((struct fake *)ctx)->takes++;
}

static int lfake_channel(lua_State *L)
{
    chan_push(L, g_fake->ch);
    return 1;
}

static int open_fake(lua_State *L)
{
    g_fake->ch = chan_new(L, 2);
    chan_set_take_hook(g_fake->ch, fake_take, g_fake);
    lua_pushvalue(L, -1);
    g_fake->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lfake_channel);
    lua_setfield(L, -2, "channel");
    lua_pushinteger(L, 7);
    lua_setfield(L, -2, "SEVEN");
    return 1;
}

static int fake_poll(void *ctx, lua_State *L)
{
    (void)L;
    ((struct fake *)ctx)->polls++;
    return 0;
}

static int fake_wait(void *ctx, lua_State *L, int64_t deadline)
{
    struct fake *f = ctx;
    (void)deadline;
    f->waits++;
    if (f->sent < 3) {
        lua_pushinteger(L, 100 + f->sent);
        CU_ASSERT_EQUAL(chan_offer(L, f->ch, -1), 0);
        f->sent++;
    } else if (f->sent == 3) {
        chan_close(L, f->ch);
        f->sent++;
    }
    return 0;
}

static void fake_finish(void *ctx, lua_State *L)
{
    (void)L;
    ((struct fake *)ctx)->finished++;
}

static void test_backend(void)
{
    struct fake f = {0};
    g_fake = &f;
    struct rt *rt = rt_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    rt_add_module(rt, "fake", open_fake);
    struct rt_backend be = {&f, fake_poll, fake_wait, fake_finish};
    rt_set_backend(rt, &be);
    const char *src = "assert(require('fake') == fake and fake.SEVEN == 7)\n"
                      "assert(not pcall(function() fake.SEVEN = 1 end))\n"
                      "local ch = fake.channel()\n"
                      "local sum = 0\n"
                      "while true do\n"
                      "  local v, ok = ch:receive()\n"
                      "  if not ok then break end\n"
                      "  sum = sum + v\n"
                      "end\n"
                      "assert(sum == 303, sum)\n";
    int st = rt_run(rt, "=backend", src, strlen(src));
    CU_ASSERT_EQUAL(st, RT_OK);
    if (st != RT_OK) fprintf(stderr, "backend run: %s\n", rt_last_error(rt));
    CU_ASSERT(f.waits >= 4);
    CU_ASSERT(f.polls >= 1);
    CU_ASSERT_EQUAL(f.finished, 1);
    CU_ASSERT_EQUAL(f.takes, 3);
    /* a full buffer refuses, a closed channel reports -2 */
    lua_State *L = rt_lua(rt);
    lua_pushinteger(L, 1);
    CU_ASSERT_EQUAL(chan_offer(L, f.ch, -1), -2);
    rt_free(rt);
}

/* ---- timers from C ---- */

struct tlog {
    int order[64]; /* ids of fired callbacks in firing order */
    int n;         /* entries used */
};

static struct tlog g_tlog;
static int g_tctx[64];

static void tcb(struct rt *rt, void *ctx)
{
    (void)rt;
    g_tlog.order[g_tlog.n++] = *(int *)ctx;
}

static void test_timers(void)
{
    struct rt *rt = rt_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    memset(&g_tlog, 0, sizeof g_tlog);
    int64_t base = rt_now_ns() - 1000000000; /* all due at the first check */
    uint64_t ids[40];
    for (int i = 0; i < 40; i++) {
        g_tctx[i] = i;
        /* deadlines out of order, some equal (FIFO among equals) */
        int64_t d = base + (int64_t)((i * 17) % 40 / 2) * 1000;
        ids[i] = rt_timer_add(rt, d, tcb, &g_tctx[i]);
        CU_ASSERT(ids[i] > 0);
    }
    for (int i = 0; i < 40; i += 5)
        rt_timer_cancel(rt, ids[i]);
    rt_timer_cancel(rt, ids[0]); /* twice: harmless */
    rt_timer_cancel(rt, 0);      /* never valid */
    rt_timer_cancel(rt, ~0ull);  /* out of range */
    const char *src = "time.sleep(0) time.sleep('1ms')";
    CU_ASSERT_EQUAL(rt_run(rt, "=timers", src, strlen(src)), RT_OK);
    CU_ASSERT_EQUAL(g_tlog.n, 32);
    for (int k = 1; k < g_tlog.n; k++) {
        int a = g_tlog.order[k - 1], b = g_tlog.order[k];
        int da = (a * 17) % 40 / 2, db = (b * 17) % 40 / 2;
        CU_ASSERT(da < db || (da == db && a < b));
    }
    for (int k = 0; k < g_tlog.n; k++)
        CU_ASSERT(g_tlog.order[k] % 5 != 0);
    rt_free(rt);
}

static void test_set_capacity(void)
{
    struct rt *rt = rt_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    lua_State *L = rt_lua(rt);
    struct chan *ch = chan_new(L, 2);
    lua_setglobal(L, "feed");
    CU_ASSERT_EQUAL(chan_len(ch), 0);
    for (int i = 1; i <= 3; i++) {
        lua_pushinteger(L, i);
        CU_ASSERT_EQUAL(chan_offer(L, ch, -1), i <= 2 ? 0 : -1);
    }
    CU_ASSERT_EQUAL(lua_gettop(L), 0); /* offered values are popped in every case */
    CU_ASSERT_EQUAL(chan_len(ch), 2);
    CU_ASSERT_EQUAL(chan_set_capacity(L, ch, 1), -1); /* below what is buffered */
    CU_ASSERT_EQUAL(chan_set_capacity(L, ch, 4), 0);
    lua_pushinteger(L, 3);
    CU_ASSERT_EQUAL(chan_offer(L, ch, -1), 0);
    CU_ASSERT_EQUAL(chan_len(ch), 3);
    chan_push(L, ch);
    CU_ASSERT_PTR_EQUAL(chan_check(L, -1), ch);
    lua_pop(L, 1);
    lua_pushinteger(L, 1);
    CU_ASSERT_PTR_NULL(chan_check(L, -1));
    lua_pop(L, 1);
    const char *src = "for i = 1, 3 do local v = feed:receive() assert(v == i, v) end\n"
                      "assert(feed:cap() == 4 and feed:len() == 0)";
    int st = rt_run(rt, "=cap", src, strlen(src));
    CU_ASSERT_EQUAL(st, RT_OK);
    if (st != RT_OK) fprintf(stderr, "cap run: %s\n", rt_last_error(rt));
    rt_free(rt);
}

static void test_run_twice(void)
{
    struct rt *rt = rt_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    CU_ASSERT_EQUAL(rt_run(rt, "=a", "return", 6), RT_OK);
    CU_ASSERT_EQUAL(rt_run(rt, "=a", "return", 6), RT_ERROR);
    rt_free(rt);
}

int suite_rt(void)
{
    CU_pSuite s = CU_add_suite("rt", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "script returns: RT_OK", test_ok) ||
        !CU_add_test(s, "error: RT_ERROR with traceback", test_error_traceback) ||
        !CU_add_test(s, "memory cap: RT_MEMORY", test_memory) ||
        !CU_add_test(s, "CPU budget: RT_CPU", test_cpu) ||
        !CU_add_test(s, "deadlock: RT_ERROR", test_deadlock) ||
        !CU_add_test(s, "print and task errors routed", test_output) ||
        !CU_add_test(s, "backend feeds a channel; C module", test_backend) ||
        !CU_add_test(s, "timer heap order and cancel", test_timers) ||
        !CU_add_test(s, "chan_offer, chan_set_capacity", test_set_capacity) ||
        !CU_add_test(s, "rt_run twice", test_run_twice))
        return CU_get_error();
    return 0;
}

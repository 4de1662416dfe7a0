/* The `time` module: durations, time.now() values, time.sleep, time.after,
 * timers and tickers.
 *
 * Layer: lua/. Built on the runtime's timers (rt.h), channels (channel.h) and
 * duration parsing (errors.h); no files, no sockets.
 *
 * Durations are Go strings ("1.5s") or numbers of nanoseconds (use the
 * time.NANOSECOND .. time.HOUR constants). Negative durations are refused
 * except for Time:add.
 *
 * Timers (as in Go): a timer's or ticker's channel has one buffered slot and
 * is never closed; a tick that finds the slot full is dropped. Each fire
 * delivers the Time of the fire. time.after(d) is a hidden timer whose
 * channel delivers one Time and is then closed. An armed timer is anchored in
 * the registry, so it fires even when the script dropped every reference;
 * after firing or :stop() it is ordinary garbage. Ticks never come in
 * bursts: a ticker that fell behind skips the missed ticks. */
#include "lua/time.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lua/channel.h"
#include "lua/errors.h"
#include "lua/rt.h"

static const char TIME_MT[] = "rt.time";
static const char TIMER_MT[] = "rt.timer";

#define NS_PER_SEC 1000000000LL

/* A point in time. */
struct rt_time {
    int64_t wall; /* CLOCK_REALTIME, ns since the Unix epoch */
    int64_t mono; /* CLOCK_MONOTONIC ns, valid when has_mono */
    int has_mono; /* 1 for values derived from time.now() */
};

/* A timer, ticker or time.after; user value 1 is its channel. */
struct rt_tmrobj {
    struct rt *rt;    /* runtime owning the timer queue */
    struct chan *ch;  /* its channel (anchored as user value 1) */
    uint64_t id;      /* rt timer id while armed, else 0 */
    int64_t deadline; /* CLOCK_MONOTONIC ns of the next fire while armed */
    int64_t period;   /* ticker period in ns; 0 for one-shot timers */
    int self_ref;     /* registry ref to this userdata while armed, else LUA_NOREF */
    int close_after;  /* 1 for time.after: close the channel after the one value */
};

static int64_t wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
    return a + b;
}

/* Reads a non-negative duration argument or raises. */
static int64_t check_duration(lua_State *L, int idx)
{
    int64_t ns = 0;
    const char *why = NULL;
    if (rt_duration_arg(L, idx, 1, &ns, &why) < 0)
        luaL_argerror(L, idx, why ? why : "invalid duration");
    return ns;
}

/* ---- Time values ---- */

static struct rt_time *push_time(lua_State *L, int64_t wall, int64_t mono, int has_mono)
{
    struct rt_time *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->wall = wall;
    t->mono = mono;
    t->has_mono = has_mono;
    rt_setmetatable(L, TIME_MT);
    return t;
}

static struct rt_time *check_time(lua_State *L, int idx)
{
    return rt_checkudata(L, idx, TIME_MT);
}

static int lnow(lua_State *L)
{
    push_time(L, wall_now(), rt_now_ns(), 1);
    return 1;
}

static int lt_unix(lua_State *L)
{
    struct rt_time *t = check_time(L, 1);
    int64_t s = t->wall / NS_PER_SEC;
    if (t->wall % NS_PER_SEC < 0) s--;
    lua_pushinteger(L, s);
    return 1;
}

static int lt_unix_nano(lua_State *L)
{
    lua_pushinteger(L, check_time(L, 1)->wall);
    return 1;
}

/* Nanoseconds from u to t: monotonic when both have a monotonic reading. */
static int64_t time_diff(const struct rt_time *t, const struct rt_time *u)
{
    if (t->has_mono && u->has_mono) return t->mono - u->mono;
    return t->wall - u->wall;
}

static int lt_sub(lua_State *L)
{
    lua_pushinteger(L, time_diff(check_time(L, 1), check_time(L, 2)));
    return 1;
}

static int lt_add(lua_State *L)
{
    struct rt_time *t = check_time(L, 1);
    int64_t d;
    if (lua_isinteger(L, 2)) {
        d = (int64_t)lua_tointeger(L, 2);
    } else if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, 2);
        luaL_argcheck(L, x > -9.2e18 && x < 9.2e18, 2, "duration out of range");
        d = (int64_t)x;
    } else {
        d = check_duration(L, 2);
    }
    push_time(L, add_sat(t->wall, d), add_sat(t->mono, d), t->has_mono);
    return 1;
}

static int lt_eq(lua_State *L)
{
    lua_pushboolean(L, time_diff(check_time(L, 1), check_time(L, 2)) == 0);
    return 1;
}

static int lt_lt(lua_State *L)
{
    lua_pushboolean(L, time_diff(check_time(L, 1), check_time(L, 2)) < 0);
    return 1;
}

static int lt_le(lua_State *L)
{
    lua_pushboolean(L, time_diff(check_time(L, 1), check_time(L, 2)) <= 0);
    return 1;
}

/* RFC 3339 in UTC with nanoseconds. */
static int lt_tostring(lua_State *L)
{
    struct rt_time *t = check_time(L, 1);
    int64_t s = t->wall / NS_PER_SEC, ns = t->wall % NS_PER_SEC;
    if (ns < 0) {
        ns += NS_PER_SEC;
        s--;
    }
    time_t tt = (time_t)s;
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&tt, &tm)) {
        lua_pushfstring(L, "time(%I ns)", (lua_Integer)t->wall);
        return 1;
    }
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ns);
    lua_pushstring(L, buf);
    return 1;
}

/* ---- sleep ---- */

static void wake_cb(struct rt *rt, void *ctx)
{
    rt_task_wake(rt, ctx);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    if (rt_now_ns() < (int64_t)ctx)
        return rt_park(L, sleep_k, ctx); /* woken early: the timer is still armed */
    return 0;
}

static int yield_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 0;
}

static int lsleep(lua_State *L)
{
    int64_t ns = check_duration(L, 1);
    struct rt *rt = rt_from_lua(L);
    rt_park_check(L);
    if (ns == 0) { /* just let the other tasks run */
        rt_task_wake(rt, rt_current_task(L));
        return rt_park(L, yield_k, 0);
    }
    int64_t deadline = add_sat(rt_now_ns(), ns);
    if (!rt_timer_add(rt, deadline, wake_cb, rt_current_task(L)))
        return luaL_error(L, "not enough memory for a timer");
    return rt_park(L, sleep_k, (lua_KContext)deadline);
}

/* ---- timers ---- */

static struct rt_tmrobj *check_timer(lua_State *L, int idx)
{
    return rt_checkudata(L, idx, TIMER_MT);
}

static void tmr_fire(struct rt *rt, void *ctx);

/* Arms the timer at index idx to fire at deadline. Raises on memory. */
static void tmr_arm(lua_State *L, int idx, struct rt_tmrobj *o, int64_t deadline)
{
    o->deadline = deadline;
    o->id = rt_timer_add(o->rt, deadline, tmr_fire, o);
    if (!o->id) luaL_error(L, "not enough memory for a timer");
    if (o->self_ref == LUA_NOREF) {
        lua_pushvalue(L, idx);
        o->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

/* Disarms the timer; returns 1 if it was armed. */
static int tmr_disarm(lua_State *L, struct rt_tmrobj *o)
{
    int was = o->id != 0;
    if (o->id) rt_timer_cancel(o->rt, o->id);
    o->id = 0;
    if (o->self_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, o->self_ref);
        o->self_ref = LUA_NOREF;
    }
    return was;
}

/* Runs on the scheduler (main state, protected). */
static void tmr_fire(struct rt *rt, void *ctx)
{
    struct rt_tmrobj *o = ctx;
    lua_State *L = rt_lua(rt);
    luaL_checkstack(L, 4, "timer");
    o->id = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->self_ref); /* keeps o alive below */
    int self = lua_gettop(L);
    push_time(L, wall_now(), rt_now_ns(), 1);
    chan_offer(L, o->ch, -1); /* a full channel drops the tick */
    if (o->close_after) chan_close(L, o->ch);
    if (o->period > 0) {
        int64_t now = rt_now_ns();
        int64_t next = add_sat(o->deadline, o->period);
        if (next <= now) next = add_sat(now, o->period);
        tmr_arm(L, self, o, next);
    } else {
        luaL_unref(L, LUA_REGISTRYINDEX, o->self_ref);
        o->self_ref = LUA_NOREF;
    }
    lua_settop(L, self - 1);
}

/* Pushes a new timer object (channel of one slot) firing after ns. */
static struct rt_tmrobj *new_timer(lua_State *L, int64_t ns, int64_t period, int close_after)
{
    struct rt_tmrobj *o = lua_newuserdatauv(L, sizeof *o, 1);
    memset(o, 0, sizeof *o);
    o->rt = rt_from_lua(L);
    o->self_ref = LUA_NOREF;
    o->period = period;
    o->close_after = close_after;
    rt_setmetatable(L, TIMER_MT);
    o->ch = chan_new(L, 1);
    lua_setiuservalue(L, -2, 1);
    tmr_arm(L, lua_gettop(L), o, add_sat(rt_now_ns(), ns));
    return o;
}

static int lafter(lua_State *L)
{
    int64_t ns = check_duration(L, 1);
    new_timer(L, ns, 0, 1);
    lua_getiuservalue(L, -1, 1);
    return 1;
}

static int ltimer(lua_State *L)
{
    new_timer(L, check_duration(L, 1), 0, 0);
    return 1;
}

static int lticker(lua_State *L)
{
    int64_t ns = check_duration(L, 1);
    luaL_argcheck(L, ns > 0, 1, "ticker period must be positive");
    new_timer(L, ns, ns, 0);
    return 1;
}

static int ltm_channel(lua_State *L)
{
    check_timer(L, 1);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int ltm_stop(lua_State *L)
{
    lua_pushboolean(L, tmr_disarm(L, check_timer(L, 1)));
    return 1;
}

static int ltm_reset(lua_State *L)
{
    struct rt_tmrobj *o = check_timer(L, 1);
    int64_t ns = check_duration(L, 2);
    if (o->period > 0) {
        luaL_argcheck(L, ns > 0, 2, "ticker period must be positive");
        o->period = ns;
    }
    int was = tmr_disarm(L, o);
    tmr_arm(L, 1, o, add_sat(rt_now_ns(), ns));
    lua_pushboolean(L, was);
    return 1;
}

static int ltm_gc(lua_State *L)
{
    struct rt_tmrobj *o = lua_touserdata(L, 1);
    /* only reached when disarmed (an armed timer is anchored), but a state
     * being closed collects everything */
    if (o->id) rt_timer_cancel(o->rt, o->id);
    o->id = 0;
    return 0;
}

int rt_open_time(lua_State *L)
{
    static const luaL_Reg time_methods[] = {
        {"unix", lt_unix}, {"unix_nano", lt_unix_nano}, {"sub", lt_sub}, {"add", lt_add},
        {NULL, NULL},
    };
    static const luaL_Reg timer_methods[] = {
        {"channel", ltm_channel},
        {"stop", ltm_stop},
        {"reset", ltm_reset},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"now", lnow},     {"sleep", lsleep},   {"after", lafter},
        {"timer", ltimer}, {"ticker", lticker}, {NULL, NULL},
    };
    static const struct {
        const char *name;
        lua_Integer ns;
    } units[] = {
        {"NANOSECOND", 1},      {"MICROSECOND", 1000},       {"MILLISECOND", 1000000},
        {"SECOND", NS_PER_SEC}, {"MINUTE", 60 * NS_PER_SEC}, {"HOUR", 3600 * NS_PER_SEC},
    };
    if (rt_newmetatable(L, TIME_MT)) {
        luaL_newlib(L, time_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lt_eq);
        lua_setfield(L, -2, "__eq");
        lua_pushcfunction(L, lt_lt);
        lua_setfield(L, -2, "__lt");
        lua_pushcfunction(L, lt_le);
        lua_setfield(L, -2, "__le");
        lua_pushcfunction(L, lt_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (rt_newmetatable(L, TIMER_MT)) {
        luaL_newlib(L, timer_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ltm_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        lua_pushinteger(L, units[i].ns);
        lua_setfield(L, -2, units[i].name);
    }
    return 1;
}

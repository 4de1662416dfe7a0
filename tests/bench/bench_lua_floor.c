/* The cost of the receive API's shape alone, with no broker, ring or socket:
 * how fast the worker's Lua (same runtime, allocator and static Lua as the
 * worker) can hand a script message values of the form the API requires,
 * {type = "binary", data = <16-byte string>}, built from C like the worker's
 * push_message, consumed by the same loop as tests/bench/client.lua's recv
 * mode. Whatever the broker and rings cost comes on top of this, so it bounds
 * our recv rate at small sizes from above; tests/BENCHMARKS.md compares it
 * with the libwebsockets client, whose C callback gets a pointer and a length.
 *
 * Usage: bench_lua_floor [messages]   (default 20 000 000)
 * Prints one line per variant: ns per message and messages/s. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/rt.h"

static const char payload[16] = "0123456789abcdef";

/* floor.next(): a new message table. The keys and type name are upvalues
 * (the worker keeps them on the dispatch stack: the same pushvalue). */
static int lnext(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_rawset(L, -3);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushlstring(L, payload, sizeof payload);
    lua_rawset(L, -3);
    return 1;
}

/* floor.nothing(): the call alone, returning a constant table. */
static int lnothing(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

static int open_floor(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "type");
    lua_pushliteral(L, "data");
    lua_pushliteral(L, "binary");
    lua_pushcclosure(L, lnext, 3);
    lua_setfield(L, -2, "next");
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "binary");
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, payload, sizeof payload);
    lua_setfield(L, -2, "data");
    lua_pushcclosure(L, lnothing, 1);
    lua_setfield(L, -2, "nothing");
    return 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *name, const char *fn, long n)
{
    char src[1024];
    snprintf(src, sizeof src,
             "local f = floor.%s\n"
             "local msgs, bytes = 0, 0\n"
             "for _ = 1, %ld do\n"
             "    local m = f()\n"
             "    msgs = msgs + 1\n"
             "    bytes = bytes + #m.data\n"
             "    if msgs & 255 == 0 and bytes < 0 then break end\n"
             "end\n"
             "assert(msgs == %ld)\n",
             fn, n, n);
    struct rt_config cfg = {.mem_limit = 256u << 20};
    struct rt *rt = rt_new(&cfg);
    if (!rt) {
        fprintf(stderr, "bench_lua_floor: cannot create the runtime\n");
        return 1;
    }
    rt_add_module(rt, "floor", open_floor);
    double t0 = now_s();
    int st = rt_run(rt, "=floor", src, strlen(src));
    double dt = now_s() - t0;
    if (st != RT_OK) {
        fprintf(stderr, "bench_lua_floor: %s\n", rt_last_error(rt));
        rt_free(rt);
        return 1;
    }
    rt_free(rt);
    printf("%-58s %8.1f ns/msg %10.2f M/s\n", name, dt / (double)n * 1e9, (double)n / dt / 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    if (n <= 0) n = 20000000;
    printf("Lua floor of the receive API (no broker, no ring), %ld messages:\n", n);
    int rc = run("call only (same table every time)", "nothing", n);
    rc |= run("new {type=\"binary\", data=<16 bytes>} per message", "next", n);
    return rc;
}

/* libFuzzer target: the scripts' `json` module (lua/json.c) through a plain
 * lua_State with rt_open_json, like tests/unit/test_json.c.
 *
 * Input byte 0 chooses the mode:
 *   even: the rest is a document for json.decode;
 *   odd:  the rest is a little stack program that builds a Lua value
 *         (strings with any bytes, integers, floats including NaN, inf and
 *         -0.0, booleans, nested and cyclic tables, sparse and mixed keys)
 *         for json.encode.
 * Checks besides "no crash": errors are error objects, never Lua errors
 * escaping; whatever encode produces, decode accepts, and encoding the
 * decoded value again gives the same text (round trip). A Lua state with a
 * 256 MiB allocator cap keeps runaway inputs bounded.
 *
 * Layer: tests/fuzz. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/errors.h"
#include "lua/json.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_json: property failed: %s\n", #c);                               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static lua_State *L;
static size_t mem_used;
#define MEM_CAP ((size_t)256 << 20)

static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && mem_used + (nsize - osize) > MEM_CAP) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) mem_used = mem_used - osize + nsize;
    return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = lua_newstate(cap_alloc, NULL);
    if (!L) abort();
    luaL_openlibs(L);
    luaL_requiref(L, "errors", rt_open_errors, 1);
    luaL_requiref(L, "json", rt_open_json, 1);
    lua_settop(L, 0);
    return 0;
}

/* Calls json.<fn> on the value at the top (popped); leaves 2 results.
 * Returns 0, or -1 if a Lua error escaped (memory errors are tolerated). */
static int call_json(const char *fn)
{
    lua_getglobal(L, "json");
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -2);
    int rc = lua_pcall(L, 1, 2, 0);
    if (rc == LUA_ERRMEM) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushnil(L);
        return -1;
    }
    if (rc != LUA_OK) {
        fprintf(stderr, "fuzz_json: json.%s raised: %s\n", fn, lua_tostring(L, -1));
        abort();
    }
    return 0;
}

/* encode(v at top, popped) -> 1 with the string at the top, or 0 (nothing). */
static int encode_top(void)
{
    if (call_json("encode") < 0) {
        lua_pop(L, 2);
        return 0;
    }
    if (lua_type(L, -2) == LUA_TSTRING) {
        CHECK(lua_isnil(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    CHECK(lua_isnil(L, -2) && rt_err_is(L, -1));
    lua_pop(L, 2);
    return 0;
}

/* decode(s at top, popped) -> 1 with the value at the top, or 0. */
static int decode_top(void)
{
    if (call_json("decode") < 0) {
        lua_pop(L, 2);
        return 0;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 1;
    }
    CHECK(lua_isnil(L, -2) && rt_err_is(L, -1));
    lua_pop(L, 2);
    return 0;
}

/* The top is a string that encode produced: decode must take it and encode
 * of the result must give the same string. */
static void round_trip(void)
{
    size_t n1;
    const char *s1 = lua_tolstring(L, -1, &n1);
    lua_pushvalue(L, -1);
    if (!decode_top()) {
        fprintf(stderr, "fuzz_json: encode produced text decode refuses: %.*s\n", (int)n1, s1);
        abort();
    }
    if (!encode_top()) {
        if (mem_used > MEM_CAP / 2) /* out of memory, not a finding */
            return;
        fprintf(stderr, "fuzz_json: decoded value does not encode again: %.*s\n", (int)n1, s1);
        abort();
    }
    size_t n2;
    const char *s2 = lua_tolstring(L, -1, &n2);
    if (n1 != n2 || memcmp(s1, s2, n1)) {
        fprintf(stderr, "fuzz_json: round trip changed\n  %.*s\n  %.*s\n", (int)n1, s1, (int)n2,
                s2);
        abort();
    }
    lua_pop(L, 1);
}

/* Builds a value from a stack program; leaves exactly one value on top. */
static void build(const uint8_t *p, size_t n)
{
    int base = lua_gettop(L);
    size_t i = 0;
    while (i < n && lua_gettop(L) - base < 200) {
        uint8_t op = p[i++];
        if (!lua_checkstack(L, 4)) break;
        switch (op % 10) {
        case 0: { /* string of the next k bytes */
            size_t k = i < n ? p[i++] % 16 : 0;
            if (k > n - i) k = n - i;
            lua_pushlstring(L, (const char *)p + i, k);
            i += k;
            break;
        }
        case 1: { /* integer */
            int64_t v = 0;
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(&v, p + i, k);
            i += k;
            lua_pushinteger(L, (lua_Integer)(op & 0x80 ? v : (int8_t)v));
            break;
        }
        case 2: { /* float */
            double d = 0;
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(&d, p + i, k);
            i += k;
            if (op & 0x80) d = (op & 0x40) ? -0.0 : (double)(int8_t)op / 4;
            lua_pushnumber(L, d);
            break;
        }
        case 3:
            lua_pushboolean(L, op & 0x80);
            break;
        case 4:
            lua_newtable(L);
            break;
        case 5: /* t[#t+1] = v (t below v) */
            if (lua_gettop(L) - base >= 2 && lua_istable(L, -2))
                lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
            break;
        case 6: /* t[k] = v (t, k, v on top) */
            if (lua_gettop(L) - base >= 3 && lua_istable(L, -3) && !lua_isnil(L, -2) &&
                !(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
                lua_rawset(L, -3);
            break;
        case 7: /* t[i] = v with a chosen index (sparse arrays) */
            if (lua_gettop(L) - base >= 2 && lua_istable(L, -2))
                lua_rawseti(L, -2, (lua_Integer)(op >> 4) - 2);
            break;
        case 8: /* cycle: t.self = t */
            if (lua_gettop(L) - base >= 1 && lua_istable(L, -1)) {
                lua_pushvalue(L, -1);
                lua_setfield(L, -2, "self");
            }
            break;
        default: /* a function (not encodable) */
            if (op & 0x80)
                lua_pushcfunction(L, rt_open_json);
            else
                lua_pushnil(L);
            break;
        }
    }
    if (lua_gettop(L) == base) lua_pushnil(L);
    /* keep the bottom-most value built */
    lua_settop(L, base + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return 0;
    lua_settop(L, 0);
    if ((data[0] & 1) == 0) {
        lua_pushlstring(L, (const char *)data + 1, size - 1);
        if (decode_top() && encode_top()) round_trip();
    } else {
        build(data + 1, size - 1);
        if (encode_top()) round_trip();
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}

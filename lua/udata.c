/* Typed userdata checks without a string lookup per call.
 *
 * Layer: lua/. luaL_checkudata finds the metatable by name: the name goes
 * through Lua's C-string cache (hash and strcmp) on every call, a visible
 * share of the worker's time on hot calls such as ch:receive() and
 * client:send(). Here each metatable carries a mark at integer key 1: a light
 * userdata holding the address of the module's name array. A check reads the
 * value's metatable and that slot (array part, no hashing) and compares
 * addresses. Scripts cannot forge the mark (they cannot make light userdata)
 * nor reach the metatables (every one sets __metatable). The metatable is
 * also registered by name and under the same address as a registry key, for
 * luaL_checkudata users and for rt_setmetatable. */
#include "lua/rt.h"

#include <lauxlib.h>

int rt_newmetatable(lua_State *L, const char *tname)
{
    int fresh = luaL_newmetatable(L, tname);
    if (fresh) {
        lua_pushlightuserdata(L, (void *)tname);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, tname);
    }
    return fresh;
}

void rt_setmetatable(lua_State *L, const char *tname)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, tname);
    lua_setmetatable(L, -2);
}

void *rt_testudata(lua_State *L, int idx, const char *tname)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
    lua_rawgeti(L, -1, 1);
    int same = lua_touserdata(L, -1) == (const void *)tname;
    lua_pop(L, 2);
    return same ? lua_touserdata(L, idx) : NULL;
}

void *rt_checkudata(lua_State *L, int idx, const char *tname)
{
    void *p = rt_testudata(L, idx, tname);
    if (!p) luaL_typeerror(L, idx, tname);
    return p;
}

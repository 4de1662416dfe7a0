/* Read-only proxies for module tables (errors, json, websocket and its
 * sub-tables): writes raise, reads and pairs() see the real table, and
 * nothing hands the real table out (pairs() iterates through a closure that
 * holds it as an upvalue).
 *
 * Layer: lua/. */
#include <lauxlib.h>

#include "lua/rt.h"

static int lreadonly(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table");
}

/* next() over the table in upvalue 1; the state argument is ignored. */
static int lproxy_next(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    if (lua_next(L, -2)) return 2;
    lua_pushnil(L);
    return 1;
}

static int lproxy_pairs(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushcclosure(L, lproxy_next, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
}

void rt_readonly(lua_State *L)
{
    luaL_checkstack(L, 4, "read-only table");
    lua_newtable(L);          /* t proxy */
    lua_createtable(L, 0, 4); /* t proxy mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lreadonly);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lproxy_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2); /* t proxy */
    lua_remove(L, -2);       /* proxy */
}

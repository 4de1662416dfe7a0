/* Error objects for scripts (module `errors`), the helpers every C module
 * uses to build them (rt_err_push, rt_err_return), and Go-style duration
 * parsing (rt_duration_parse, rt_duration_arg).
 *
 * Layer: lua/. Depends on Lua and on shm/proto.h (error kinds) only; no
 * runtime (rt.h), no I/O, no libwebsockets.
 *
 * Representation. An error object is a full userdata holding its kind and
 * retryable flag, with four user values: 1 message (string), 2 details
 * (table or nil, a private shallow copy), 3 stack (traceback string), 4 cause
 * (the wrapped error object or string, or nil). Its metatable is registered
 * under RT_ERR_META and locked (__metatable = false), so scripts can neither
 * change nor forge error objects; rt_err_is() is a metatable identity check.
 *
 * Decisions where api-contract.md is silent:
 * - :details() returns a new shallow copy each call (nil when there are
 *   none); errors.new copies the given details table too. Nested tables are
 *   shared.
 * - :stack() is the traceback taken when the object was made; errors.wrap
 *   keeps the cause's stack when the cause is an error object (the origin is
 *   what matters) and takes a new one when the cause is a plain string.
 * - errors.new{...} accepts only the fields message (required string),
 *   kind (nil or a known kind string), retryable (nil or boolean), details
 *   (nil or table); any other field or type raises (catches typos such as
 *   "retriable"). An unknown kind string raises in errors.new and errors.is.
 * - errors.wrap(nil, ctx) returns nil (as Go's pkg/errors), so
 *   `return errors.wrap(err, "x")` is safe; a plain string cause gives an
 *   error of kind UNKNOWN. The result also answers :unwrap() with its cause.
 * - errors.is(v, kind) is false for anything that is neither an error object
 *   nor a string; a string counts as kind UNKNOWN ("").
 * - `..` works with error objects (uses the message), like tostring().
 * - The module table is a read-only proxy (__newindex raises, __metatable
 *   locked, pairs() lists the real contents).
 *
 * Durations: see rt_duration_parse below for the accepted syntax. */
#include "lua/errors.h"
#include "lua/rt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shm/proto.h"

/* Registry name of the error metatable. */
#define RT_ERR_META "rt.error"

/* User value slots of an error object. */
enum { UV_MESSAGE = 1, UV_DETAILS = 2, UV_STACK = 3, UV_CAUSE = 4, UV_COUNT = 4 };

/* The C part of an error object; strings and tables live in user values. */
struct rt_err {
    int kind;      /* enum proto_err_kind */
    int retryable; /* RT_RETRY_NO, RT_RETRY_YES or RT_RETRY_NIL */
};

/* Kind strings indexed by enum proto_err_kind. */
static const char *const kind_str[] = {
#define KSTR_(name, str) str,
    PROTO_ERROR_KINDS(KSTR_)
#undef KSTR_
};

/* Constant names (errors.NOT_FOUND, ...) indexed like kind_str. */
static const char *const kind_name[] = {
#define KNAME_(name, str) #name,
    PROTO_ERROR_KINDS(KNAME_)
#undef KNAME_
};

/* Returns the kind whose string is s, or -1. */
static int kind_from_string(const char *s, size_t n)
{
    for (int i = 0; i < PROTO_EK_COUNT; i++)
        if (strlen(kind_str[i]) == n && memcmp(kind_str[i], s, n) == 0) return i;
    return -1;
}

/* ---- error objects ---- */

static struct rt_err *check_err(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, RT_ERR_META);
}

/* Pushes a shallow copy of the table at idx. [-0, +1] */
static void push_table_copy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "details");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

static int lerr_kind(lua_State *L)
{
    struct rt_err *e = check_err(L, 1);
    lua_pushstring(L, kind_str[e->kind]);
    return 1;
}

static int lerr_message(lua_State *L)
{
    check_err(L, 1);
    lua_getiuservalue(L, 1, UV_MESSAGE);
    return 1;
}

static int lerr_retryable(lua_State *L)
{
    struct rt_err *e = check_err(L, 1);
    if (e->retryable == RT_RETRY_NIL)
        lua_pushnil(L);
    else
        lua_pushboolean(L, e->retryable == RT_RETRY_YES);
    return 1;
}

static int lerr_details(lua_State *L)
{
    check_err(L, 1);
    if (lua_getiuservalue(L, 1, UV_DETAILS) != LUA_TTABLE) return 1; /* nil */
    push_table_copy(L, -1);
    return 1;
}

static int lerr_stack(lua_State *L)
{
    check_err(L, 1);
    lua_getiuservalue(L, 1, UV_STACK);
    return 1;
}

static int lerr_unwrap(lua_State *L)
{
    check_err(L, 1);
    lua_getiuservalue(L, 1, UV_CAUSE);
    return 1;
}

static int lerr_concat(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    luaL_tolstring(L, 2, NULL);
    lua_concat(L, 2);
    return 1;
}

static const luaL_Reg err_methods[] = {
    {"kind", lerr_kind},
    {"message", lerr_message},
    {"retryable", lerr_retryable},
    {"details", lerr_details},
    {"stack", lerr_stack},
    {"unwrap", lerr_unwrap},
    {NULL, NULL},
};

/* Pushes the error metatable, creating it on first use so that modules can
 * build errors in a state where `errors` was never opened. [-0, +1] */
static void push_meta(lua_State *L)
{
    if (!luaL_newmetatable(L, RT_ERR_META)) return;
    luaL_newlib(L, err_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lerr_message);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, lerr_concat);
    lua_setfield(L, -2, "__concat");
    lua_pushliteral(L, "error");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
}

/* Pushes a new error object. msg_idx: the message string; details_idx: 0 or
 * a table (copied); cause_idx: 0 or the wrapped value; stack_idx: 0 to take
 * a traceback here, else a string. Indices must be absolute. [-0, +1] */
static void push_err(lua_State *L, int kind, int retryable, int msg_idx, int details_idx,
                     int cause_idx, int stack_idx)
{
    luaL_checkstack(L, 6, "error object");
    if (kind < 0 || kind >= PROTO_EK_COUNT) kind = PROTO_EK_UNKNOWN;
    if (retryable != RT_RETRY_NO && retryable != RT_RETRY_YES) retryable = RT_RETRY_NIL;
    struct rt_err *e = lua_newuserdatauv(L, sizeof *e, UV_COUNT);
    e->kind = kind;
    e->retryable = retryable;
    push_meta(L);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, msg_idx);
    lua_setiuservalue(L, -2, UV_MESSAGE);
    if (details_idx && lua_istable(L, details_idx)) {
        push_table_copy(L, details_idx);
        lua_setiuservalue(L, -2, UV_DETAILS);
    }
    if (stack_idx)
        lua_pushvalue(L, stack_idx);
    else
        luaL_traceback(L, L, NULL, 1);
    lua_setiuservalue(L, -2, UV_STACK);
    if (cause_idx) {
        lua_pushvalue(L, cause_idx);
        lua_setiuservalue(L, -2, UV_CAUSE);
    }
}

void rt_err_push(lua_State *L, int kind, int retryable, int details_idx, const char *msg)
{
    if (details_idx) details_idx = lua_absindex(L, details_idx);
    lua_pushstring(L, msg ? msg : "");
    push_err(L, kind, retryable, lua_gettop(L), details_idx, 0, 0);
    lua_remove(L, -2); /* the message copy */
}

int rt_err_return(lua_State *L, int false_first, int kind, int retryable, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        lua_pushliteral(L, "(unformattable error message)");
    } else if ((size_t)n < sizeof small) {
        lua_pushlstring(L, small, (size_t)n);
    } else {
        luaL_Buffer b;
        char *p = luaL_buffinitsize(L, &b, (size_t)n + 1);
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
        luaL_pushresultsize(&b, (size_t)n);
    }
    va_end(ap2);
    int msg = lua_gettop(L);
    if (false_first)
        lua_pushboolean(L, 0);
    else
        lua_pushnil(L);
    push_err(L, kind, retryable, msg, 0, 0, 0);
    lua_remove(L, msg);
    return 2;
}

int rt_err_is(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, RT_ERR_META) != NULL;
}

/* ---- module functions ---- */

/* errors.new(msg) or errors.new{message=, kind=, retryable=, details=}. */
static int lnew(lua_State *L)
{
    if (!lua_istable(L, 1)) {
        luaL_checkstring(L, 1);
        lua_settop(L, 1);
        lua_pushvalue(L, 1);
        lua_tostring(L, -1); /* numbers become their text */
        push_err(L, PROTO_EK_UNKNOWN, RT_RETRY_NIL, 2, 0, 0, 0);
        return 1;
    }
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || (strcmp(k, "message") && strcmp(k, "kind") && strcmp(k, "retryable") &&
                   strcmp(k, "details")))
            return luaL_error(L, "errors.new: unknown field %s", luaL_tolstring(L, -1, NULL));
    }
    lua_getfield(L, 1, "message"); /* 2 */
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "errors.new: field 'message' must be a string");
    lua_tostring(L, 2);
    int kind = PROTO_EK_UNKNOWN;
    if (lua_getfield(L, 1, "kind") != LUA_TNIL) { /* 3 */
        size_t n;
        const char *ks = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &n) : NULL;
        kind = ks ? kind_from_string(ks, n) : -1;
        if (kind < 0)
            return luaL_error(L, "errors.new: unknown kind %s", luaL_tolstring(L, 3, NULL));
    }
    int retryable = RT_RETRY_NIL;
    int t = lua_getfield(L, 1, "retryable"); /* 4 */
    if (t == LUA_TBOOLEAN)
        retryable = lua_toboolean(L, 4) ? RT_RETRY_YES : RT_RETRY_NO;
    else if (t != LUA_TNIL)
        return luaL_error(L, "errors.new: field 'retryable' must be a boolean or nil");
    t = lua_getfield(L, 1, "details"); /* 5 */
    if (t != LUA_TNIL && t != LUA_TTABLE)
        return luaL_error(L, "errors.new: field 'details' must be a table or nil");
    push_err(L, kind, retryable, 2, t == LUA_TTABLE ? 5 : 0, 0, 0);
    return 1;
}

/* errors.wrap(err, context) -> error whose message is "context: message". */
static int lwrap(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) return lua_pushnil(L), 1;
    const char *ctx = luaL_checkstring(L, 2);
    lua_settop(L, 2);
    if (rt_err_is(L, 1)) {
        struct rt_err *e = lua_touserdata(L, 1);
        lua_getiuservalue(L, 1, UV_MESSAGE);                   /* 3 */
        lua_pushfstring(L, "%s: %s", ctx, lua_tostring(L, 3)); /* 4 */
        lua_getiuservalue(L, 1, UV_DETAILS);                   /* 5 */
        lua_getiuservalue(L, 1, UV_STACK);                     /* 6 */
        push_err(L, e->kind, e->retryable, 4, 5, 1, 6);
        return 1;
    }
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "error object or string expected");
    lua_pushfstring(L, "%s: %s", ctx, lua_tostring(L, 1)); /* 3 */
    push_err(L, PROTO_EK_UNKNOWN, RT_RETRY_NIL, 3, 0, 1, 0);
    return 1;
}

/* errors.is(err, kind) -> boolean; follows wrapped causes. */
static int lis(lua_State *L)
{
    size_t n;
    const char *ks = luaL_checklstring(L, 2, &n);
    int kind = kind_from_string(ks, n);
    if (kind < 0) return luaL_argerror(L, 2, lua_pushfstring(L, "unknown error kind '%s'", ks));
    lua_settop(L, 1);
    /* Causes form a chain built by wrap(); bound the walk anyway. */
    for (int hops = 0; hops < 1000; hops++) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushboolean(L, kind == PROTO_EK_UNKNOWN);
            return 1;
        }
        struct rt_err *e = luaL_testudata(L, -1, RT_ERR_META);
        if (!e) break;
        if (e->kind == kind) {
            lua_pushboolean(L, 1);
            return 1;
        }
        lua_getiuservalue(L, -1, UV_CAUSE);
        lua_remove(L, -2);
    }
    lua_pushboolean(L, 0);
    return 1;
}

static const luaL_Reg err_funcs[] = {
    {"new", lnew},
    {"wrap", lwrap},
    {"is", lis},
    {NULL, NULL},
};

int rt_open_errors(lua_State *L)
{
    luaL_checkstack(L, 6, "errors");
    push_meta(L);
    lua_pop(L, 1);
    luaL_newlib(L, err_funcs);
    for (int i = 0; i < PROTO_EK_COUNT; i++) {
        lua_pushstring(L, kind_str[i]);
        lua_setfield(L, -2, kind_name[i]);
    }
    rt_readonly(L);
    return 1;
}

/* ---- durations ---- */

/* One unit of the Go syntax. */
struct dur_unit {
    const char *name; /* as written; µ both as U+00B5 and U+03BC */
    uint64_t ns;      /* nanoseconds per unit */
};

static const struct dur_unit dur_units[] = {
    {"ns", 1ull},
    {"us", 1000ull},
    {"\xc2\xb5s", 1000ull},
    {"\xce\xbcs", 1000ull},
    {"ms", 1000000ull},
    {"s", 1000000000ull},
    {"m", 60ull * 1000000000ull},
    {"h", 3600ull * 1000000000ull},
};

/* Go's time.ParseDuration syntax without negative values:
 *   duration := "0" | "+0" | ["+"] element { element }
 *   element  := number unit ; number := digits ["." [digits]] | "." digits
 * A leading '+' is accepted (as Go does); any '-' is refused, even "-0".
 * Fractions are exact: the part below one nanosecond is truncated ("1.9ns"
 * is 1ns). The total must fit int64 nanoseconds (about 292 years). A unit is
 * the longest run of bytes that are neither digits nor '.', so "1 s" and
 * "1S" are unknown units. */
int rt_duration_parse(const char *s, size_t n, int64_t *ns, const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    size_t i = 0;
    if (n > 0 && s[0] == '-') {
        *why = "negative durations are not allowed";
        return -1;
    }
    if (n > 0 && s[0] == '+') i++;
    if (i == n) {
        *why = "empty duration";
        return -1;
    }
    if (n - i == 1 && s[i] == '0') {
        *ns = 0;
        return 0;
    }
    const uint64_t max = (uint64_t)INT64_MAX;
    uint64_t total = 0;
    while (i < n) {
        /* integer part */
        uint64_t v = 0;
        size_t start = i;
        int ovf = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            unsigned d = (unsigned)(s[i] - '0');
            if (v > (max - d) / 10)
                ovf = 1;
            else
                v = v * 10 + d;
            i++;
        }
        int have_int = i > start;
        /* fraction: keep up to 18 digits, beyond that they are below 1ns of
         * any unit we have and are ignored (they still must be digits) */
        uint64_t f = 0, scale = 1;
        int have_frac = 0;
        if (i < n && s[i] == '.') {
            i++;
            size_t fstart = i;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                if (scale < 1000000000000000000ull) {
                    f = f * 10 + (uint64_t)(s[i] - '0');
                    scale *= 10;
                }
                i++;
            }
            have_frac = i > fstart;
        }
        if (!have_int && !have_frac) {
            *why = "invalid duration: expected a number";
            return -1;
        }
        size_t ustart = i;
        while (i < n && s[i] != '.' && !(s[i] >= '0' && s[i] <= '9'))
            i++;
        if (i == ustart) {
            *why = "missing unit in duration (use ns, us, ms, s, m or h)";
            return -1;
        }
        uint64_t unit = 0;
        for (size_t u = 0; u < sizeof dur_units / sizeof dur_units[0]; u++) {
            size_t len = strlen(dur_units[u].name);
            if (len == i - ustart && memcmp(dur_units[u].name, s + ustart, len) == 0)
                unit = dur_units[u].ns;
        }
        if (!unit) {
            *why = "unknown unit in duration (use ns, us, ms, s, m or h)";
            return -1;
        }
        if (ovf || v > max / unit) {
            *why = "duration out of range (over 292 years)";
            return -1;
        }
        uint64_t part = v * unit;
        if (f) {
            /* f < 10^18 and unit <= 3.6e12: the product fits 128 bits. */
            unsigned __int128 frac = (unsigned __int128)f * unit / scale;
            part += (uint64_t)frac; /* frac < unit, so no wrap: part <= max */
            if (part > max) {
                *why = "duration out of range (over 292 years)";
                return -1;
            }
        }
        if (total > max - part) {
            *why = "duration out of range (over 292 years)";
            return -1;
        }
        total += part;
    }
    *ns = (int64_t)total;
    return 0;
}

int rt_duration_arg(lua_State *L, int idx, int64_t number_unit_ns, int64_t *ns, const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    if (number_unit_ns <= 0) number_unit_ns = 1;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_Integer v = lua_tointeger(L, idx);
            if (v < 0) {
                *why = "negative durations are not allowed";
                return -1;
            }
            if (v > INT64_MAX / number_unit_ns) {
                *why = "duration out of range (over 292 years)";
                return -1;
            }
            *ns = (int64_t)v * number_unit_ns;
            return 0;
        } else {
            lua_Number x = lua_tonumber(L, idx);
            if (isnan(x)) {
                *why = "duration is NaN";
                return -1;
            }
            if (x < 0) {
                *why = "negative durations are not allowed";
                return -1;
            }
            double r = round((double)x * (double)number_unit_ns);
            /* 2^63 is the first double above INT64_MAX; inf is caught too */
            if (!(r < 9223372036854775808.0)) {
                *why = "duration out of range (over 292 years)";
                return -1;
            }
            *ns = (int64_t)r;
            return 0;
        }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return rt_duration_parse(s, n, ns, why);
    }
    default:
        *why = "duration must be a number or a string";
        return -1;
    }
}

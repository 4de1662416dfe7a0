/* The `json` module: json.encode(v) -> string | nil, err and
 * json.decode(s) -> value | nil, err, as api-contract.md says.
 *
 * Layer: lua/. Depends on Lua, lua/errors.h (error objects) and shm/proto.h
 * (error kinds); no runtime (rt.h), no I/O. Every byte of memory it uses is
 * Lua-managed (userdata, luaL_Buffer, Lua strings), so the worker's memory
 * cap applies; a memory error raises like any other allocation in Lua.
 *
 * Failures return `nil, err` with err an error object of kind INVALID, not
 * retryable. Misuse raises: json.encode() without an argument, json.decode of
 * a non-string.
 *
 * Encoding (decisions where the contract is silent):
 * - nil -> null (only reachable at top level: tables cannot hold nil);
 *   booleans; integers in decimal; floats as the shortest of %.15g, %.16g,
 *   %.17g that reads back to the same double, with ".0" appended when that
 *   text would look like an integer (so a float stays a float through a
 *   round trip; -0.0 -> "-0.0"); NaN and infinities are refused.
 * - Strings: '"', '\\' and control characters are escaped (\b \f \n \r \t,
 *   else \u00XX); everything else, including DEL and valid UTF-8, is copied
 *   as is; invalid UTF-8 (overlong forms, surrogates, > U+10FFFF, truncated)
 *   is refused.
 * - Tables are read raw (metatables are ignored). Empty table -> []; keys
 *   exactly 1..n -> array; only string keys -> object with keys sorted by
 *   bytes (deterministic output). Mixed keys, sparse arrays, keys that are
 *   neither positive integers nor strings, cycles, and nesting deeper than
 *   JSON_MAX_DEPTH containers are refused; so are functions, userdata
 *   (error objects included) and threads.
 *
 * Decoding:
 * - RFC 8259, strict: no comments, no trailing commas, no BOM, no NaN or
 *   Infinity, no leading zeros or '+', only the four whitespace characters
 *   around tokens; any value may be the top-level one; trailing non-space
 *   bytes are an error. Strings must be valid UTF-8 and contain no raw
 *   control characters; \u escapes must pair surrogates correctly (a lone
 *   surrogate is an error); \u0000 gives a NUL byte.
 * - Numbers without fraction or exponent that fit int64 are integers ("-0"
 *   is integer 0); others are floats; a number whose magnitude overflows a
 *   double (1e400) is refused rather than turned into inf (which encode
 *   could not write back); underflow gives 0.0 or a subnormal.
 * - null -> nil. In an array a null keeps its position and leaves a hole:
 *   [1,null,3] -> {1, nil, 3} (t[3] == 3, but #t may be 1 or 3: use pairs or
 *   known indices). In an object a null member is absent.
 * - Duplicate object keys: the last one wins.
 * - More than JSON_MAX_DEPTH nested containers -> error.
 * - Error messages end with "at byte offset N" (0-based offset into the
 *   input) and err:details() is {offset = N}. */
#include "lua/json.h"
#include "lua/rt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/errors.h"
#include "shm/proto.h"

/* Deepest nesting of arrays/objects accepted either way; the outermost
 * container counts as 1. */
#define JSON_MAX_DEPTH 128

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 when it
 * is invalid (RFC 3629: no overlong forms, no surrogates, max U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xc2) return 0;
    if (c < 0xe0) return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
        if (c == 0xed && p[1] >= 0xa0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xf5) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xf4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* Writes code point cp (valid, not a surrogate) as UTF-8; returns bytes. */
static size_t utf8_put(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- encoder ---- */

/* Encoder state. The output buffer is a userdata kept at stack slot `slot`
 * (the state owns it through that slot; growing replaces it). */
struct jenc {
    lua_State *L;
    char *p;      /* output bytes (the userdata at slot) */
    size_t len;   /* bytes written */
    size_t cap;   /* bytes available at p */
    int slot;     /* absolute stack index of the buffer userdata */
    int seen;     /* absolute stack index of the table of tables being encoded */
    char why[96]; /* reason of failure, when an encode step returns -1 */
};

/* A string key of an object, anchored as a key of the table being encoded. */
struct jkey {
    const char *s; /* bytes */
    size_t n;      /* length */
};

static void enc_reserve(struct jenc *e, size_t more)
{
    if (e->cap - e->len >= more) return;
    if (more > ((size_t)-1 >> 2) - e->len) luaL_error(e->L, "json.encode: output too large");
    size_t cap = e->cap * 2;
    if (cap < e->len + more) cap = e->len + more;
    char *np = lua_newuserdatauv(e->L, cap, 0);
    memcpy(np, e->p, e->len);
    lua_replace(e->L, e->slot);
    e->p = np;
    e->cap = cap;
}

static void enc_add(struct jenc *e, const char *s, size_t n)
{
    enc_reserve(e, n);
    memcpy(e->p + e->len, s, n);
    e->len += n;
}

static void enc_char(struct jenc *e, char c)
{
    enc_reserve(e, 1);
    e->p[e->len++] = c;
}

static int enc_fail(struct jenc *e, const char *why)
{
    snprintf(e->why, sizeof e->why, "%s", why);
    return -1;
}

static int enc_string(struct jenc *e, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    enc_reserve(e, n + 2);
    enc_char(e, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            enc_add(e, str + i, run - i);
            i = run;
            continue;
        }
        unsigned c = s[i];
        if (c >= 0x80) {
            size_t l = utf8_len(s + i, n - i);
            if (!l) return enc_fail(e, "string is not valid UTF-8");
            enc_add(e, str + i, l);
            i += l;
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        enc_add(e, esc, el);
        i++;
    }
    enc_char(e, '"');
    return 0;
}

static int enc_number(struct jenc *e, int idx)
{
    char buf[48];
    int n;
    if (lua_isinteger(e->L, idx)) {
        n = snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(e->L, idx));
        enc_add(e, buf, (size_t)n);
        return 0;
    }
    double x = (double)lua_tonumber(e->L, idx);
    if (!isfinite(x)) return enc_fail(e, "cannot encode NaN or infinity");
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (prec == 17 || strtod(buf, NULL) == x) break;
    }
    int looks_int = 1;
    for (int i = 0; i < n; i++) {
        if (buf[i] == ',') /* a locale's decimal comma */
            buf[i] = '.';
        if (buf[i] == '.' || buf[i] == 'e') looks_int = 0;
    }
    enc_add(e, buf, (size_t)n);
    if (looks_int) enc_add(e, ".0", 2);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const struct jkey *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    if (c) return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

static int enc_value(struct jenc *e, int idx, int depth);

/* Encodes the table at idx (absolute); depth: containers around it. */
static int enc_table(struct jenc *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth >= JSON_MAX_DEPTH) return enc_fail(e, "tables nested deeper than 128 levels");
    luaL_checkstack(L, 8, "json.encode");
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->seen) != LUA_TNIL) return enc_fail(e, "table contains a cycle");
    lua_pop(L, 1);
    /* classify the keys */
    size_t count = 0, nstr = 0, nint = 0;
    lua_Integer maxi = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        int kt = lua_type(L, -1);
        if (kt == LUA_TSTRING) {
            nstr++;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            nint++;
            if (lua_tointeger(L, -1) > maxi) maxi = lua_tointeger(L, -1);
        } else {
            lua_pop(L, 1);
            if (kt == LUA_TNUMBER)
                return enc_fail(e, "table has a number key that is not a positive integer");
            return enc_fail(e, "table has a key that is neither a string nor an integer");
        }
    }
    if (nstr && nint) return enc_fail(e, "table mixes array and object keys");
    if (nint && (lua_Unsigned)maxi != count)
        return enc_fail(e, "sparse array (integer keys are not exactly 1..n)");
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->seen);
    if (nstr == 0) {
        enc_char(e, '[');
        for (lua_Integer i = 1; i <= maxi; i++) {
            if (i > 1) enc_char(e, ',');
            lua_rawgeti(L, idx, i);
            if (enc_value(e, lua_gettop(L), depth + 1)) return -1;
            lua_pop(L, 1);
        }
        enc_char(e, ']');
    } else {
        if (count > ((size_t)-1) / sizeof(struct jkey)) return enc_fail(e, "table too large");
        struct jkey *keys = lua_newuserdatauv(L, count * sizeof *keys, 0);
        size_t k = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (k < count) {
                keys[k].s = lua_tolstring(L, -1, &keys[k].n);
                k++;
            }
        }
        qsort(keys, k, sizeof *keys, key_cmp);
        enc_char(e, '{');
        for (size_t i = 0; i < k; i++) {
            if (i > 0) enc_char(e, ',');
            if (enc_string(e, keys[i].s, keys[i].n)) return -1;
            enc_char(e, ':');
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_rawget(L, idx);
            if (enc_value(e, lua_gettop(L), depth + 1)) return -1;
            lua_pop(L, 1);
        }
        enc_char(e, '}');
        lua_pop(L, 1); /* keys */
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, e->seen);
    return 0;
}

static int enc_value(struct jenc *e, int idx, int depth)
{
    switch (lua_type(e->L, idx)) {
    case LUA_TNIL:
        enc_add(e, "null", 4);
        return 0;
    case LUA_TBOOLEAN:
        if (lua_toboolean(e->L, idx))
            enc_add(e, "true", 4);
        else
            enc_add(e, "false", 5);
        return 0;
    case LUA_TNUMBER:
        return enc_number(e, idx);
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(e->L, idx, &n);
        return enc_string(e, s, n);
    }
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    default:
        snprintf(e->why, sizeof e->why, "cannot encode a value of type %s",
                 luaL_typename(e->L, idx));
        return -1;
    }
}

/* json.encode(v) -> string | nil, err */
static int lencode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    struct jenc e;
    memset(&e, 0, sizeof e);
    e.L = L;
    e.cap = 256;
    e.p = lua_newuserdatauv(L, e.cap, 0); /* 2: buffer */
    e.slot = 2;
    lua_newtable(L); /* 3: tables being encoded */
    e.seen = 3;
    if (enc_value(&e, 1, 0)) {
        lua_settop(L, 1);
        return rt_err_return(L, 0, PROTO_EK_INVALID, RT_RETRY_NO, "json.encode: %s", e.why);
    }
    lua_pushlstring(L, e.p, e.len);
    return 1;
}

/* ---- decoder ---- */

/* Decoder state over the input string (anchored at stack index 1). */
struct jdec {
    lua_State *L;
    const unsigned char *s; /* input bytes */
    size_t n;               /* input length */
    size_t i;               /* offset of the next byte to read */
    const char *why;        /* reason of failure (static) */
    size_t at;              /* offset the failure refers to */
};

static int dec_fail(struct jdec *d, size_t at, const char *why)
{
    d->why = why;
    d->at = at;
    return -1;
}

static void dec_ws(struct jdec *d)
{
    while (d->i < d->n) {
        unsigned char c = d->s[d->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        d->i++;
    }
}

static int hex4(const unsigned char *p, unsigned long *out)
{
    unsigned long v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Parses the string starting at the opening quote; pushes it. */
static int dec_string(struct jdec *d)
{
    const unsigned char *s = d->s;
    size_t start = d->i + 1, j = start;
    int esc = 0;
    while (j < d->n && s[j] != '"') {
        if (s[j] == '\\') {
            esc = 1;
            j += 2;
        } else {
            j++;
        }
    }
    if (j >= d->n) return dec_fail(d, d->i, "unterminated string");
    size_t end = j; /* offset of the closing quote */
    luaL_Buffer b;
    char *out = NULL;
    size_t o = 0;
    if (esc) out = luaL_buffinitsize(d->L, &b, end - start);
    size_t k = start;
    while (k < end) {
        unsigned c = s[k];
        if (c < 0x20) return dec_fail(d, k, "control character in string");
        if (c >= 0x80) {
            size_t l = utf8_len(s + k, end - k);
            if (!l) return dec_fail(d, k, "invalid UTF-8 in string");
            if (esc) {
                memcpy(out + o, s + k, l);
                o += l;
            }
            k += l;
            continue;
        }
        if (c != '\\') {
            if (esc) out[o++] = (char)c;
            k++;
            continue;
        }
        /* escape: the scan above guarantees k + 1 < end */
        unsigned char x = s[k + 1];
        char simple = 0;
        switch (x) {
        case '"':
            simple = '"';
            break;
        case '\\':
            simple = '\\';
            break;
        case '/':
            simple = '/';
            break;
        case 'b':
            simple = '\b';
            break;
        case 'f':
            simple = '\f';
            break;
        case 'n':
            simple = '\n';
            break;
        case 'r':
            simple = '\r';
            break;
        case 't':
            simple = '\t';
            break;
        case 'u':
            break;
        default:
            return dec_fail(d, k, "invalid escape in string");
        }
        if (simple) {
            out[o++] = simple;
            k += 2;
            continue;
        }
        unsigned long cp, lo;
        if (end - k < 6 || hex4(s + k + 2, &cp))
            return dec_fail(d, k, "invalid \\u escape in string");
        if (cp >= 0xdc00 && cp <= 0xdfff) return dec_fail(d, k, "lone low surrogate in string");
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - k < 12 || s[k + 6] != '\\' || s[k + 7] != 'u' || hex4(s + k + 8, &lo) ||
                lo < 0xdc00 || lo > 0xdfff)
                return dec_fail(d, k, "lone high surrogate in string");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            k += 6;
        }
        k += 6;
        o += utf8_put(out + o, cp);
    }
    if (esc)
        luaL_pushresultsize(&b, o);
    else
        lua_pushlstring(d->L, (const char *)s + start, end - start);
    d->i = end + 1;
    return 0;
}

static int dec_number(struct jdec *d)
{
    const unsigned char *s = d->s;
    size_t start = d->i, i = d->i;
    if (i < d->n && s[i] == '-') i++;
    if (i < d->n && s[i] == '0') {
        i++;
    } else if (i < d->n && s[i] >= '1' && s[i] <= '9') {
        while (i < d->n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return dec_fail(d, i, "invalid number");
    }
    if (i < d->n && s[i] == '.') {
        i++;
        if (!(i < d->n && s[i] >= '0' && s[i] <= '9'))
            return dec_fail(d, i, "digit expected after decimal point");
        while (i < d->n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < d->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < d->n && (s[i] == '+' || s[i] == '-')) i++;
        if (!(i < d->n && s[i] >= '0' && s[i] <= '9'))
            return dec_fail(d, i, "digit expected in exponent");
        while (i < d->n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    /* The text is valid JSON number syntax, which Lua reads the same way
     * (integer if it fits, else float); copy it to get a terminator. */
    size_t len = i - start;
    char small[64];
    char *buf = small;
    if (len >= sizeof small) buf = lua_newuserdatauv(d->L, len + 1, 0);
    memcpy(buf, s + start, len);
    buf[len] = '\0';
    size_t used = lua_stringtonumber(d->L, buf);
    if (buf != small) lua_remove(d->L, -2);
    if (used != len + 1) return dec_fail(d, start, "invalid number");
    if (!lua_isinteger(d->L, -1) && isinf((double)lua_tonumber(d->L, -1)))
        return dec_fail(d, start, "number out of range");
    d->i = i;
    return 0;
}

static int dec_literal(struct jdec *d, const char *word, size_t n)
{
    if (d->n - d->i < n || memcmp(d->s + d->i, word, n) != 0)
        return dec_fail(d, d->i, "invalid literal");
    d->i += n;
    return 0;
}

static int dec_value(struct jdec *d, int depth);

static int dec_array(struct jdec *d, int depth)
{
    lua_State *L = d->L;
    if (depth > JSON_MAX_DEPTH) return dec_fail(d, d->i, "nesting deeper than 128 levels");
    luaL_checkstack(L, 6, "json.decode");
    lua_newtable(L);
    d->i++; /* [ */
    dec_ws(d);
    if (d->i < d->n && d->s[d->i] == ']') {
        d->i++;
        return 0;
    }
    for (lua_Integer idx = 1;; idx++) {
        if (dec_value(d, depth)) return -1;
        if (lua_isnil(L, -1))
            lua_pop(L, 1); /* null: leave a hole */
        else
            lua_rawseti(L, -2, idx);
        dec_ws(d);
        if (d->i >= d->n) return dec_fail(d, d->i, "unexpected end of input in array");
        unsigned char c = d->s[d->i++];
        if (c == ']') return 0;
        if (c != ',') return dec_fail(d, d->i - 1, "',' or ']' expected");
    }
}

static int dec_object(struct jdec *d, int depth)
{
    lua_State *L = d->L;
    if (depth > JSON_MAX_DEPTH) return dec_fail(d, d->i, "nesting deeper than 128 levels");
    luaL_checkstack(L, 6, "json.decode");
    lua_newtable(L);
    d->i++; /* { */
    dec_ws(d);
    if (d->i < d->n && d->s[d->i] == '}') {
        d->i++;
        return 0;
    }
    for (;;) {
        dec_ws(d);
        if (d->i >= d->n) return dec_fail(d, d->i, "unexpected end of input in object");
        if (d->s[d->i] != '"') return dec_fail(d, d->i, "string key expected");
        if (dec_string(d)) return -1;
        dec_ws(d);
        if (d->i >= d->n || d->s[d->i] != ':') return dec_fail(d, d->i, "':' expected");
        d->i++;
        if (dec_value(d, depth)) return -1;
        lua_rawset(L, -3);
        dec_ws(d);
        if (d->i >= d->n) return dec_fail(d, d->i, "unexpected end of input in object");
        unsigned char c = d->s[d->i++];
        if (c == '}') return 0;
        if (c != ',') return dec_fail(d, d->i - 1, "',' or '}' expected");
    }
}

/* Parses one value (after optional whitespace) and pushes it; depth is the
 * number of containers around it. */
static int dec_value(struct jdec *d, int depth)
{
    dec_ws(d);
    if (d->i >= d->n) return dec_fail(d, d->i, "unexpected end of input");
    switch (d->s[d->i]) {
    case '{':
        return dec_object(d, depth + 1);
    case '[':
        return dec_array(d, depth + 1);
    case '"':
        return dec_string(d);
    case 't':
        if (dec_literal(d, "true", 4)) return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5)) return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4)) return -1;
        lua_pushnil(d->L);
        return 0;
    default:
        if (d->s[d->i] == '-' || (d->s[d->i] >= '0' && d->s[d->i] <= '9')) return dec_number(d);
        return dec_fail(d, d->i, "unexpected character");
    }
}

/* json.decode(s) -> value | nil, err */
static int ldecode(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_settop(L, 1);
    struct jdec d;
    memset(&d, 0, sizeof d);
    d.L = L;
    d.s = (const unsigned char *)lua_tolstring(L, 1, &d.n);
    if (dec_value(&d, 0) == 0) {
        dec_ws(&d);
        if (d.i == d.n) return 1;
        dec_fail(&d, d.i, "unexpected data after the JSON value");
    }
    lua_settop(L, 1);
    lua_pushnil(L);           /* 2 */
    lua_createtable(L, 0, 1); /* 3: details */
    lua_pushinteger(L, (lua_Integer)d.at);
    lua_setfield(L, 3, "offset");
    char msg[160];
    snprintf(msg, sizeof msg, "json.decode: %s at byte offset %zu", d.why, d.at);
    rt_err_push(L, PROTO_EK_INVALID, RT_RETRY_NO, 3, msg); /* 4 */
    lua_remove(L, 3);
    return 2;
}

/* ---- module ---- */

static const luaL_Reg json_funcs[] = {
    {"encode", lencode},
    {"decode", ldecode},
    {NULL, NULL},
};

int rt_open_json(lua_State *L)
{
    luaL_checkstack(L, 4, "json");
    luaL_newlib(L, json_funcs);
    rt_readonly(L);
    return 1;
}

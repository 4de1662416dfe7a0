/* CUnit suite for lua/json.c, driven from C through a plain lua_State with
 * rt_open_json (no runtime): accept/refuse vectors in the style of
 * JSONTestSuite, RFC 8259 examples, every truncation of valid documents,
 * single-byte mutations, exact encoder output, round trips, and a check
 * that all memory comes from the Lua allocator (a capped allocator makes
 * big inputs fail with a memory error). */
#include <CUnit/CUnit.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/errors.h"
#include "lua/json.h"

/* A state with the base library, `errors` and `json` as globals. */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    luaL_requiref(L, "errors", rt_open_errors, 1);
    luaL_requiref(L, "json", rt_open_json, 1);
    lua_settop(L, 0);
    return L;
}

/* Calls json.decode on n bytes; leaves (value, err) on the stack. */
static void decode(lua_State *L, const char *s, size_t n)
{
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushlstring(L, s, n);
    lua_call(L, 1, 2);
}

/* 1 if json.decode accepts the n bytes (stack unchanged afterwards). */
static int accepts(lua_State *L, const char *s, size_t n)
{
    decode(L, s, n);
    int ok = lua_isnil(L, -1); /* no error object */
    if (!ok) {
        /* a refusal must be an INVALID error object with an offset */
        CU_ASSERT_TRUE(rt_err_is(L, -1));
    }
    lua_pop(L, 2);
    return ok;
}

/* Runs a Lua chunk that must return true (assertions inside). */
static void run_lua(lua_State *L, const char *chunk)
{
    if (luaL_dostring(L, chunk) != LUA_OK) {
        fprintf(stderr, "\n  lua: %s\n", lua_tostring(L, -1));
        CU_FAIL("lua chunk failed");
    }
    lua_settop(L, 0);
}

/* Documents every strict parser must accept (RFC 8259, JSONTestSuite y_). */
static const char *const yes[] = {
    "[]",
    "{}",
    "[[]]",
    "[{}]",
    "0",
    "-0",
    "1",
    "-1",
    "12345",
    "1.5",
    "-1.5e10",
    "1E2",
    "1e-2",
    "1e+2",
    "0.0",
    "0e0",
    "\"\"",
    "\"a\"",
    "\"\\u0000\"",
    "\"\\uD834\\uDD1E\"",
    "\"\\/\"",
    "\"\\\\\\\"\"",
    "\"\xf4\x8f\xbf\xbf\"",
    "\"\x7f\"",
    "true",
    "false",
    "null",
    " [ ] ",
    "\t\n\r [1 , 2]\r\n",
    "[null]",
    "[1,null,2]",
    "{\"a\":null}",
    "{\"a\":[],\"b\":{}}",
    "{\"\":\"\"}",
    "[\"\\u00e9\\u20ac\"]",
    "{\"a\":1,\"a\":2}",
    "[-9223372036854775808]",
    "[9223372036854775808]",
    "[1e-400]",
    "[123e-10000000]",
};

/* Documents it must refuse (JSONTestSuite n_ and our own limits). */
static const char *const no[] = {
    "",
    " ",
    "[",
    "]",
    "{",
    "}",
    "[1,]",
    "[,]",
    "[,1]",
    "[1,,2]",
    "[1 2]",
    "{\"a\"}",
    "{\"a\":}",
    "{\"a\" 1}",
    "{\"a\":1,}",
    "{,}",
    "{a:1}",
    "{1:1}",
    "{null:1}",
    "[1]]",
    "[1]x",
    "[1] [2]",
    "tru",
    "True",
    "nul",
    "NULL",
    "nan",
    "NaN",
    "inf",
    "Infinity",
    "-Infinity",
    "truefalse",
    "01",
    "-01",
    "+1",
    "-",
    "1.",
    ".1",
    "1.e1",
    "1e",
    "1e-",
    "0x1",
    "0X1",
    "1_000",
    "2.",
    "-.5",
    "- 1",
    "1 2",
    "'a'",
    "\"a",
    "\"\\\"",
    "\"\\a\"",
    "\"\\u\"",
    "\"\\u00\"",
    "\"\\u00G0\"",
    "\"\\uD800\"",
    "\"\\uDC00\"",
    "\"\\uD800\\uD800\"",
    "\"\\uD800\\\"",
    "\"\\uD800\\u\"",
    "\"\\U0041\"",
    "\"\t\"",
    "\"\n\"",
    "\"\x01\"",
    "\"\x80\"",
    "\"\xc3\"",
    "\"\xc3\x28\"",
    "\"\xe0\x80\xaf\"",
    "\"\xed\xa0\x80\"",
    "\"\xf4\x90\x80\x80\"",
    "\"\xf5\x80\x80\x80\"",
    "\"\xc0\xaf\"",
    "\"\xfe\"",
    "\xef\xbb\xbf[]",
    "/**/[]",
    "[]//",
    "[1,/**/2]",
    "1e400",
    "-1e400",
    "[1e309]",
    "\xa0[]",
    "[\x0c]",
    "{\"a\":1 \"b\":2}",
    "[\"a\",]",
    "[\"\\x41\"]",
};

static void test_vectors(void)
{
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        int ok = accepts(L, yes[i], strlen(yes[i]));
        if (!ok) fprintf(stderr, "\n  refused: %s\n", yes[i]);
        CU_ASSERT_TRUE(ok);
    }
    /* inf is refused rather than produced */
    CU_ASSERT_FALSE(accepts(L, "1E400000000000000000000", 23));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        int ok = accepts(L, no[i], strlen(no[i]));
        if (ok) fprintf(stderr, "\n  accepted: %s\n", no[i]);
        CU_ASSERT_FALSE(ok);
    }
    /* embedded NULs, which strlen above cannot express */
    CU_ASSERT_FALSE(accepts(L, "[1]\0", 4));
    CU_ASSERT_FALSE(accepts(L, "\0", 1));
    CU_ASSERT_FALSE(accepts(L, "\"a\0\"", 4));
    CU_ASSERT_TRUE(accepts(L, "\"a\\u0000\"", 9));
    CU_ASSERT_EQUAL(lua_gettop(L), 0);
    lua_close(L);
}

/* The two examples of RFC 8259 section 13. */
static void test_rfc_examples(void)
{
    static const char image[] = "{\n"
                                "  \"Image\": {\n"
                                "    \"Width\":  800,\n"
                                "    \"Height\": 600,\n"
                                "    \"Title\":  \"View from 15th Floor\",\n"
                                "    \"Thumbnail\": {\n"
                                "      \"Url\":    \"http://www.example.com/image/481989943\",\n"
                                "      \"Height\": 125,\n"
                                "      \"Width\":  100\n"
                                "    },\n"
                                "    \"Animated\" : false,\n"
                                "    \"IDs\": [116, 943, 234, 38793]\n"
                                "  }\n"
                                "}\n";
    static const char cities[] = "[\n"
                                 "  {\n"
                                 "     \"precision\": \"zip\",\n"
                                 "     \"Latitude\":  37.7668,\n"
                                 "     \"Longitude\": -122.3959,\n"
                                 "     \"Address\":   \"\",\n"
                                 "     \"City\":      \"SAN FRANCISCO\",\n"
                                 "     \"State\":     \"CA\",\n"
                                 "     \"Zip\":       \"94107\",\n"
                                 "     \"Country\":   \"US\"\n"
                                 "  },\n"
                                 "  {\n"
                                 "     \"precision\": \"zip\",\n"
                                 "     \"Latitude\":  37.371991,\n"
                                 "     \"Longitude\": -122.026020,\n"
                                 "     \"Address\":   \"\",\n"
                                 "     \"City\":      \"SUNNYVALE\",\n"
                                 "     \"State\":     \"CA\",\n"
                                 "     \"Zip\":       \"94085\",\n"
                                 "     \"Country\":   \"US\"\n"
                                 "  }\n"
                                 "]\n";
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    decode(L, image, strlen(image));
    CU_ASSERT_TRUE(lua_isnil(L, -1));
    lua_pop(L, 1);
    lua_setglobal(L, "image");
    decode(L, cities, strlen(cities));
    CU_ASSERT_TRUE(lua_isnil(L, -1));
    lua_pop(L, 1);
    lua_setglobal(L, "cities");
    run_lua(L,
            "local i = image.Image\n"
            "assert(i.Width == 800 and math.type(i.Width) == 'integer')\n"
            "assert(i.Title == 'View from 15th Floor')\n"
            "assert(i.Thumbnail.Url == 'http://www.example.com/image/481989943')\n"
            "assert(i.Animated == false)\n"
            "assert(#i.IDs == 4 and i.IDs[4] == 38793)\n"
            "assert(#cities == 2)\n"
            "assert(cities[1].Latitude == 37.7668 and math.type(cities[1].Latitude) == 'float')\n"
            "assert(cities[2].Longitude == -122.026020)\n"
            "assert(cities[2].City == 'SUNNYVALE' and cities[2].Address == '')\n"
            "local again = json.decode(json.encode(image))\n"
            "assert(again.Image.IDs[2] == 943 and again.Image.Thumbnail.Width == 100)\n");
    lua_close(L);
}

/* Every proper prefix of a document whose value is a container or string
 * is incomplete and must be refused; the reported offset never exceeds the
 * prefix length. Also every "split" (prefix + the rest) reassembles to an
 * accepted document, i.e. nothing depends on where the input came from. */
static void test_truncations(void)
{
    static const char *const docs[] = {
        "{\"a\":[1,2.5,-3e2,true,false,null,\"x\\u00e9\\ud83d\\ude00\\n\"],\"b\":{\"c\":{}}}",
        "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",[[[]]],{\"\":0}]",
        "\"long \\\"escaped\\\" string with \\\\ and \\/ and \\t\"",
    };
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t n = strlen(docs[d]);
        CU_ASSERT_TRUE(accepts(L, docs[d], n));
        for (size_t cut = 0; cut < n; cut++) {
            /* exact-size heap copy so ASan sees any over-read */
            char *p = malloc(cut ? cut : 1);
            memcpy(p, docs[d], cut);
            decode(L, p, cut);
            free(p);
            CU_ASSERT_TRUE(lua_isnil(L, -2));
            CU_ASSERT_TRUE_FATAL(rt_err_is(L, -1));
            lua_getfield(L, -1, "details");
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);
            lua_getfield(L, -1, "offset");
            lua_Integer off = lua_tointeger(L, -1);
            CU_ASSERT_TRUE(off >= 0 && (size_t)off <= cut);
            lua_pop(L, 4);
            /* reassembling the split gives the original result */
            lua_pushlstring(L, docs[d], cut);
            lua_pushstring(L, docs[d] + cut);
            lua_concat(L, 2);
            size_t len;
            const char *whole = lua_tolstring(L, -1, &len);
            CU_ASSERT_TRUE(accepts(L, whole, len));
            lua_pop(L, 1);
        }
    }
    CU_ASSERT_EQUAL(lua_gettop(L), 0);
    lua_close(L);
}

/* Every single-byte change of a valid document is either accepted or
 * refused cleanly (no crash, no sanitizer report, stack balanced). */
static void test_mutations(void)
{
    static const char doc[] =
        "{\"k\":[0,-1.5e-3,\"\\u0041\\ud834\\udd1e\\u00e9\xc3\xa9\",true,null,{\"n\":[]}]}";
    static const unsigned char bytes[] = {0,   '"', '\\', '[', ']', '{', '}', ',',  ':',  '-',
                                          '.', 'e', 'u',  '0', '9', 'd', ' ', 0x80, 0xc3, 0xff};
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    size_t n = sizeof doc - 1;
    char *buf = malloc(n);
    int accepted = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b < sizeof bytes; b++) {
            memcpy(buf, doc, n);
            buf[i] = (char)bytes[b];
            if (accepts(L, buf, n))
                accepted++;
            else
                refused++;
        }
    }
    free(buf);
    CU_ASSERT_TRUE(accepted > 0 && refused > 0);
    CU_ASSERT_EQUAL(lua_gettop(L), 0);
    lua_close(L);
}

/* Nesting: 128 containers are fine both ways, 129 are refused; a huge
 * depth fails early without recursing through it. */
static void test_depth(void)
{
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    static char doc[2 * 200000];
    for (int depth = 126; depth <= 130; depth++) {
        memset(doc, '[', (size_t)depth);
        memset(doc + depth, ']', (size_t)depth);
        CU_ASSERT_EQUAL(accepts(L, doc, 2 * (size_t)depth), depth <= 128);
        for (int k = 0; k < depth; k++) {
            memcpy(doc + 5 * k, "{\"a\":", 5);
            doc[5 * depth + 1 + k] = '}';
        }
        doc[5 * depth] = '0';
        CU_ASSERT_EQUAL(accepts(L, doc, 6 * (size_t)depth + 1), depth <= 128);
    }
    memset(doc, '[', sizeof doc);
    CU_ASSERT_FALSE(accepts(L, doc, sizeof doc));
    run_lua(L, "local function nest(n) local t = {} for _ = 2, n do t = {x = t} end return t end\n"
               "assert(json.encode(nest(128)))\n"
               "local s, err = json.encode(nest(129))\n"
               "assert(s == nil and err:message():find('128'))\n");
    lua_close(L);
}

static void test_encode_from_c(void)
{
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    run_lua(
        L,
        "local e = json.encode\n"
        "assert(e({b = {1, 2}, a = 'x\\0y', c = {}}) == "
        "'{\"a\":\"x\\\\u0000y\",\"b\":[1,2],\"c\":[]}')\n"
        "assert(e({['b'] = 1, ['a\\0'] = 2, ['a'] = 3}) == '{\"a\":3,\"a\\\\u0000\":2,\"b\":1}')\n"
        "assert(e(123456789012) == '123456789012')\n"
        "assert(e(1/3) == '0.3333333333333333')\n"
        "assert(e(100.0) == '100.0')\n"
        "assert(e(1e21) == '1e+21')\n"
        "assert(e(5e-324) == '4.94065645841247e-324')\n"
        "assert(e('\\u{2028}') == '\"\\u{2028}\"')\n"
        "local s, err = e({1, nil, 3})\n"
        "assert(s == nil and err:kind() == errors.INVALID)\n"
        "local big = {}\n"
        "for i = 1, 10000 do big[i] = {i, tostring(i)} end\n"
        "local out = assert(e(big))\n"
        "local back = json.decode(out)\n"
        "assert(#back == 10000 and back[9999][2] == '9999')\n");
    lua_close(L);
}

/* Round trips of random values built in Lua (deterministic seed). */
static void test_round_trips(void)
{
    lua_State *L = new_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    run_lua(L, "math.randomseed(42)\n"
               "local function gen(d)\n"
               "  local r = math.random(1, d > 3 and 6 or 8)\n"
               "  if r == 1 then return math.random(math.mininteger, math.maxinteger)\n"
               "  elseif r == 2 then return (math.random() - 0.5) * 10 ^ math.random(-300, 300)\n"
               "  elseif r == 3 then return math.random(0, 1) == 1\n"
               "  elseif r == 4 or r == 5 then\n"
               "    local t = {}\n"
               "    for i = 1, math.random(0, 12) do\n"
               "      local c = math.random(0, 0x10FFFF)\n"
               "      if c >= 0xD800 and c <= 0xDFFF then c = 0x41 end\n"
               "      t[i] = utf8.char(c)\n"
               "    end\n"
               "    return table.concat(t)\n"
               "  elseif r == 6 then return math.random(-5, 5)\n"
               "  elseif r == 7 then\n"
               "    local t = {}\n"
               "    for i = 1, math.random(0, 5) do t[i] = gen(d + 1) end\n"
               "    return t\n"
               "  else\n"
               "    local t = {}\n"
               "    for i = 1, math.random(0, 5) do t['k' .. math.random(1, 9)] = gen(d + 1) end\n"
               "    return t\n"
               "  end\n"
               "end\n"
               "local function same(a, b)\n"
               "  if type(a) ~= type(b) then return false end\n"
               "  if type(a) ~= 'table' then return a == b and math.type(a) == math.type(b) end\n"
               "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
               "  for k in pairs(b) do if a[k] == nil then return false end end\n"
               "  return true\n"
               "end\n"
               "for i = 1, 2000 do\n"
               "  local v = gen(0)\n"
               "  local s = assert(json.encode(v))\n"
               "  local back, err = json.decode(s)\n"
               "  assert(err == nil, s)\n"
               "  assert(same(v, back), s)\n"
               "  assert(json.encode(back) == s, s)\n"
               "end\n");
    lua_close(L);
}

/* Allocator with a hard cap, to show json allocates through Lua only. */
struct capped {
    size_t used;  /* bytes allocated now */
    size_t limit; /* cap */
};

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct capped *c = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        c->used -= old;
        return NULL;
    }
    if (nsize > old && c->used + (nsize - old) > c->limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) c->used = c->used - old + nsize;
    return p;
}

static int lcall_decode(lua_State *L)
{
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    return 2;
}

static int lcall_encode(lua_State *L)
{
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    return 2;
}

static void test_memory_cap(void)
{
    struct capped c = {0, 2u << 20};
    lua_State *L = lua_newstate(capped_alloc, &c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    luaL_requiref(L, "_G", luaopen_base, 1);
    luaL_requiref(L, "json", rt_open_json, 1);
    lua_settop(L, 0);
    /* decode: 200k small integers need far more than 2 MiB as a table */
    size_t n = 200000;
    char *doc = malloc(2 * n + 2);
    doc[0] = '[';
    for (size_t i = 0; i < n; i++) {
        doc[1 + 2 * i] = '7';
        doc[2 + 2 * i] = ',';
    }
    doc[2 * n] = ']';
    lua_pushcfunction(L, lcall_decode);
    lua_pushlstring(L, doc, 2 * n + 1);
    free(doc);
    CU_ASSERT_EQUAL(lua_pcall(L, 1, 2, 0), LUA_ERRMEM);
    lua_settop(L, 0);
    CU_ASSERT_TRUE(c.used <= c.limit);
    /* encode: 64 references to one 64 KiB string give 4 MiB of output */
    lua_pushcfunction(L, lcall_encode);
    lua_createtable(L, 64, 0);
    char *chunk = malloc(65536);
    memset(chunk, 'a', 65536);
    lua_pushlstring(L, chunk, 65536);
    free(chunk);
    for (int i = 1; i <= 64; i++) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
    CU_ASSERT_EQUAL(lua_pcall(L, 1, 2, 0), LUA_ERRMEM);
    lua_settop(L, 0);
    /* and the state still works within the cap */
    lua_pushcfunction(L, lcall_decode);
    lua_pushliteral(L, "[1,2,3]");
    CU_ASSERT_EQUAL(lua_pcall(L, 1, 2, 0), LUA_OK);
    CU_ASSERT_TRUE(lua_istable(L, 1));
    lua_close(L);
    CU_ASSERT_EQUAL(c.used, 0);
}

int suite_json(void)
{
    CU_pSuite s = CU_add_suite("json", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "accept/refuse vectors", test_vectors) ||
        !CU_add_test(s, "RFC 8259 examples", test_rfc_examples) ||
        !CU_add_test(s, "every truncation and split", test_truncations) ||
        !CU_add_test(s, "single-byte mutations", test_mutations) ||
        !CU_add_test(s, "nesting limit", test_depth) ||
        !CU_add_test(s, "encoder output", test_encode_from_c) ||
        !CU_add_test(s, "random round trips", test_round_trips) ||
        !CU_add_test(s, "memory through the Lua allocator", test_memory_cap))
        return CU_get_error();
    return 0;
}

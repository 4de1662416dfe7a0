/* CUnit suite for the duration helpers of lua/errors.c: rt_duration_parse
 * (Go syntax, no negatives, int64 nanoseconds) and rt_duration_arg (numbers
 * in a given unit, strings, other types refused). */
#include <CUnit/CUnit.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/errors.h"

#define NS   1LL
#define US   (1000 * NS)
#define MS   (1000 * US)
#define SEC  (1000 * MS)
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)

/* A string that must parse to ns. */
struct dur_ok {
    const char *s; /* input (NUL-terminated; length from strlen) */
    int64_t ns;    /* expected nanoseconds */
};

/* A string that must be refused with a reason containing `why`. */
struct dur_bad {
    const char *s;   /* input */
    size_t n;        /* length; 0 = strlen(s) */
    const char *why; /* expected substring of the reason */
};

static const struct dur_ok ok_vectors[] = {
    {"0", 0},
    {"+0", 0},
    {"0s", 0},
    {"0.0h", 0},
    {"5s", 5 * SEC},
    {"+5s", 5 * SEC},
    {"500ms", 500 * MS},
    {"300ms", 300 * MS},
    {"1ns", 1},
    {"1us", US},
    {"1\xc2\xb5s", US}, /* U+00B5 MICRO SIGN */
    {"1\xce\xbcs", US}, /* U+03BC GREEK SMALL LETTER MU */
    {"7ms", 7 * MS},
    {"2m", 2 * MIN},
    {"3h", 3 * HOUR},
    {"1.5h", 90 * MIN},
    {"1h30m", 90 * MIN},
    {"1m30s", 90 * SEC},
    {"2h45m", 2 * HOUR + 45 * MIN},
    {"2h45m30.5s", 2 * HOUR + 45 * MIN + 30 * SEC + 500 * MS},
    {".5s", 500 * MS},
    {"1.s", SEC},
    {"0.1h", 6 * MIN},
    {"1.25ms", 1250 * US},
    {"1.9ns", 1},         /* below 1ns is truncated */
    {"0.000000001s", 1},  /* exactly one nanosecond */
    {"0.0000000019s", 1}, /* 1.9ns */
    {"0.0000000009s", 0}, /* 0.9ns */
    {"1.000000000000000000001s", SEC},
    {"0.333333333333333333333333h", 1199999999999}, /* 1/3 h minus truncation */
    {"1h1h", 2 * HOUR},                             /* repeated units add up, as in Go */
    {"1s1ms1us1ns", SEC + MS + US + 1},
    {"0001s", SEC},
    {"9223372036854775807ns", INT64_MAX},
    {"9223372036.854775807s", INT64_MAX},
    {"2562047h47m16.854775807s", INT64_MAX},
    {"2562047h", 2562047 * HOUR},
};

static const struct dur_bad bad_vectors[] = {
    {"", 0, "empty"},
    {"+", 0, "empty"},
    {"-1s", 0, "negative"},
    {"-0", 0, "negative"},
    {"-", 0, "negative"},
    {"5", 0, "missing unit"},
    {"00", 0, "missing unit"},
    {"1.5", 0, "missing unit"},
    {"1h30", 0, "missing unit"},
    {"1x", 0, "unknown unit"},
    {"1S", 0, "unknown unit"},
    {"1sec", 0, "unknown unit"},
    {"1 s", 0, "unknown unit"},
    {"1s ", 0, "unknown unit"},
    {"1e3s", 0, "unknown unit"},
    {"1d", 0, "unknown unit"},
    {"1\xb5s", 0, "unknown unit"},    /* lone byte, not UTF-8 */
    {"1\xc2\xb5", 0, "unknown unit"}, /* micro sign without s */
    {"1\0s", 3, "unknown unit"},      /* embedded NUL */
    {"1s\0", 3, "unknown unit"},
    {".", 0, "expected a number"},
    {"s", 0, "expected a number"},
    {".s", 0, "expected a number"},
    {"1h.", 0, "expected a number"},
    {" 1s", 0, "expected a number"},
    {"+-1s", 0, "expected a number"},
    {"1..5s", 0, "missing unit"},
    {"9223372036854775808ns", 0, "out of range"},
    {"9223372036.854775808s", 0, "out of range"},
    {"2562047h47m16.854775808s", 0, "out of range"},
    {"2562048h", 0, "out of range"},
    {"99999999999999999999999999h", 0, "out of range"},
    {"5124095576030431h1h", 0, "out of range"},
    {"2562047h2562047h", 0, "out of range"},
};

static void test_valid(void)
{
    for (size_t i = 0; i < sizeof ok_vectors / sizeof ok_vectors[0]; i++) {
        const struct dur_ok *v = &ok_vectors[i];
        int64_t ns = -7;
        const char *why = NULL;
        int rc = rt_duration_parse(v->s, strlen(v->s), &ns, &why);
        if (rc != 0 || ns != v->ns)
            fprintf(stderr, "\n  %s -> rc %d ns %lld (%s), want %lld\n", v->s, rc, (long long)ns,
                    why ? why : "", (long long)v->ns);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(ns, v->ns);
    }
}

static void test_invalid(void)
{
    for (size_t i = 0; i < sizeof bad_vectors / sizeof bad_vectors[0]; i++) {
        const struct dur_bad *v = &bad_vectors[i];
        size_t n = v->n ? v->n : strlen(v->s);
        int64_t ns = -7;
        const char *why = NULL;
        int rc = rt_duration_parse(v->s, n, &ns, &why);
        int good = rc == -1 && why && strstr(why, v->why);
        if (!good)
            fprintf(stderr, "\n  '%s' -> rc %d why %s (want %s)\n", v->s, rc, why ? why : "-",
                    v->why);
        CU_ASSERT_TRUE(good);
        CU_ASSERT_EQUAL(ns, -7); /* untouched on failure */
    }
}

/* The length argument is honoured: a valid string cut short is parsed as
 * the shorter string, and bytes past n are never read. */
static void test_length_bound(void)
{
    int64_t ns;
    const char *why;
    CU_ASSERT_EQUAL(rt_duration_parse("15s", 2, &ns, &why), -1); /* "15" */
    CU_ASSERT_EQUAL(rt_duration_parse("1h30m", 2, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, HOUR);
    /* every prefix of a long string, copied to an exact-size heap block so
     * ASan catches any read past n */
    const char *s = "2h45m30.5s1\xc2\xb5s7ns";
    for (size_t n = 0; n <= strlen(s); n++) {
        char *p = malloc(n ? n : 1);
        memcpy(p, s, n);
        why = NULL;
        int rc = rt_duration_parse(p, n, &ns, &why);
        CU_ASSERT_TRUE(rc == 0 || (rc == -1 && why != NULL));
        free(p);
    }
}

/* Parsing is additive: for valid elements a and b, parse(a b) equals
 * parse(a) + parse(b). Checked on random element pairs and triples. */
static void test_additive(void)
{
    static const char *elems[] = {"1h",    "30m",  "0.5s",     "250ms", "1.5us", "2\xc2\xb5s",
                                  "7ns",   ".25h", "12.125ms", "3s",    "0ns",   "999999ns",
                                  "1.9ns", "0.1s", "2562h",    "59m",   "1.s",   "000.001ms"};
    const size_t ne = sizeof elems / sizeof elems[0];
    unsigned seed = 12345;
    for (int iter = 0; iter < 5000; iter++) {
        char buf[128] = "";
        int64_t sum = 0;
        int parts = 2 + iter % 2;
        int ok = 1;
        for (int p = 0; p < parts; p++) {
            seed = seed * 1103515245u + 12345u;
            const char *el = elems[(seed >> 16) % ne];
            int64_t one;
            const char *why;
            if (rt_duration_parse(el, strlen(el), &one, &why) != 0) ok = 0;
            sum += one;
            strcat(buf, el);
        }
        CU_ASSERT_TRUE_FATAL(ok);
        int64_t whole = -1;
        const char *why;
        CU_ASSERT_EQUAL(rt_duration_parse(buf, strlen(buf), &whole, &why), 0);
        CU_ASSERT_EQUAL(whole, sum);
    }
}

/* Random strings over the syntax's alphabet: never crash, results are in
 * range, and failures always give a reason. */
static void test_random(void)
{
    static const char alphabet[] = "0123456789..nsumh+-\xc2\xb5\xce\xbc x";
    unsigned seed = 99;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char buf[24];
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        int64_t ns = -1;
        const char *why = NULL;
        int rc = rt_duration_parse(buf, n, &ns, &why);
        if (rc == 0) {
            accepted++;
            CU_ASSERT_TRUE(ns >= 0);
        } else {
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_PTR_NOT_NULL(why);
        }
    }
    CU_ASSERT_TRUE(accepted > 0);
}

/* rt_duration_arg on one value: returns rc and stores ns/why. */
static int arg(lua_State *L, int64_t unit, int64_t *ns, const char **why)
{
    *ns = -7;
    *why = NULL;
    int rc = rt_duration_arg(L, -1, unit, ns, why);
    lua_pop(L, 1);
    return rc;
}

static void test_arg(void)
{
    lua_State *L = luaL_newstate();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    int64_t ns;
    const char *why;

    lua_pushinteger(L, 500);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 500 * MS);
    lua_pushinteger(L, 500);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 500);
    lua_pushinteger(L, 0);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 0);
    lua_pushnumber(L, 1.5);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 1500 * US);
    lua_pushnumber(L, 0.0000015); /* 1.5ns: rounds to nearest */
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 2);
    lua_pushnumber(L, 0.0000014);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 1);
    lua_pushnumber(L, -0.0);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 0);
    lua_pushnumber(L, 2.0);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 2);
    lua_pushinteger(L, INT64_MAX / MS);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, (INT64_MAX / MS) * MS);
    lua_pushinteger(L, INT64_MAX);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, INT64_MAX);
    lua_pushnumber(L, 9.2e18);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 9200000000000000000LL);

    lua_pushliteral(L, "1m30s");
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 90 * SEC);
    lua_pushliteral(L, "0");
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    CU_ASSERT_EQUAL(ns, 0);

    /* refusals */
    lua_pushinteger(L, -1);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "negative"));
    CU_ASSERT_EQUAL(ns, -7);
    lua_pushinteger(L, INT64_MAX / MS + 1);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "out of range"));
    lua_pushnumber(L, -0.5);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "negative"));
    lua_pushnumber(L, NAN);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "NaN"));
    lua_pushnumber(L, HUGE_VAL);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "out of range"));
    lua_pushnumber(L, -HUGE_VAL);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    lua_pushnumber(L, 9.3e18);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), -1);
    lua_pushnumber(L, 9223372036854775808.0);
    CU_ASSERT_EQUAL(arg(L, 1, &ns, &why), -1);
    lua_pushnumber(L, 1e10); /* 1e10 ms = 1e16 ns fine; 1e13 ms overflows */
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), 0);
    lua_pushnumber(L, 1e13);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    lua_pushliteral(L, "500"); /* a numeric string is a Go duration: needs a unit */
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "missing unit"));
    lua_pushliteral(L, "-5s");
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    lua_pushboolean(L, 1);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "number or a string"));
    lua_pushnil(L);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    lua_newtable(L);
    CU_ASSERT_EQUAL(arg(L, MS, &ns, &why), -1);
    CU_ASSERT_EQUAL(lua_gettop(L), 0);
    /* an absent argument (index above the top) is refused too */
    CU_ASSERT_EQUAL(rt_duration_arg(L, 3, MS, &ns, &why), -1);
    lua_close(L);
}

/* The error helpers that share errors.c: rt_err_return/rt_err_push build
 * error objects without the `errors` module being opened. */
static void test_err_helpers(void)
{
    lua_State *L = luaL_newstate();
    CU_ASSERT_PTR_NOT_NULL_FATAL(L);
    luaL_openlibs(L);
    CU_ASSERT_EQUAL(rt_err_return(L, 1, 3, RT_RETRY_YES, "code %d: %s", 42, "bad"), 2);
    CU_ASSERT_EQUAL(lua_gettop(L), 2);
    CU_ASSERT_TRUE(lua_isboolean(L, 1) && !lua_toboolean(L, 1));
    CU_ASSERT_TRUE(rt_err_is(L, 2));
    CU_ASSERT_FALSE(rt_err_is(L, 1));
    lua_setglobal(L, "e1");
    lua_settop(L, 0);
    /* a long message (beyond any small buffer) survives intact */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CU_ASSERT_EQUAL(rt_err_return(L, 0, 99, 7, "%s!", big), 2);
    CU_ASSERT_TRUE(lua_isnil(L, 1));
    lua_setglobal(L, "e2");
    lua_settop(L, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "tcp");
    lua_setfield(L, -2, "stage");
    lua_pushinteger(L, 5);
    rt_err_push(L, 6, RT_RETRY_NO, -2, "dial failed");
    CU_ASSERT_EQUAL(lua_gettop(L), 3);
    CU_ASSERT_TRUE(rt_err_is(L, 3));
    lua_setglobal(L, "e3");
    lua_pushliteral(L, "changed");
    lua_setfield(L, 1, "stage");
    lua_settop(L, 0);
    const char *chunk = "assert(e1:message() == 'code 42: bad' and e1:kind() == 'Invalid')\n"
                        "assert(e1:retryable() == true and e1:details() == nil)\n"
                        "assert(tostring(e1) == 'code 42: bad')\n"
                        "assert(e2:kind() == '' and e2:retryable() == nil)\n"
                        "assert(#e2:message() == 1000 and e2:message():sub(-2) == 'z!')\n"
                        "assert(e3:kind() == 'Internal' and e3:retryable() == false)\n"
                        "assert(e3:details().stage == 'tcp')\n"
                        "assert(type(e3:stack()) == 'string')\n"
                        "assert(getmetatable(e3) == false)\n";
    if (luaL_dostring(L, chunk) != LUA_OK) {
        fprintf(stderr, "\n  lua: %s\n", lua_tostring(L, -1));
        CU_FAIL("error objects built from C");
    }
    lua_close(L);
}

int suite_duration(void)
{
    CU_pSuite s = CU_add_suite("duration", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "valid vectors", test_valid) ||
        !CU_add_test(s, "invalid vectors", test_invalid) ||
        !CU_add_test(s, "length bound and prefixes", test_length_bound) ||
        !CU_add_test(s, "additive over elements", test_additive) ||
        !CU_add_test(s, "random inputs", test_random) ||
        !CU_add_test(s, "rt_duration_arg", test_arg) ||
        !CU_add_test(s, "rt_err_push and rt_err_return", test_err_helpers))
        return CU_get_error();
    return 0;
}

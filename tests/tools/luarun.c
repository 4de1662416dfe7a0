/* luarun: runs Lua test scripts in the worker runtime (lua/rt.h) without a
 * broker, each script in a fresh runtime.
 *
 *   luarun [--mem BYTES] [--cpu MS] [--timeout SECONDS] script.lua ...
 *       Test mode. A script registers cases with test(name, fn); after its
 *       main chunk returns, each case runs as its own task, in order, with a
 *       per-case timeout (default 10 s; a case that blocks longer fails, one
 *       that spins is stopped only by --cpu). Prints `ok - FILE: NAME` or
 *       `not ok - FILE: NAME: ERROR` per case and `N passed, N failed` at
 *       the end; exits 1 when anything failed.
 *   luarun --expect-error REGEX [--mem BYTES] [--cpu MS] script.lua ...
 *       Expect mode. Each script runs as the main chunk and passes when the
 *       run ends with an error whose text matches REGEX (POSIX extended)
 *       and the script never printed the marker UNREACHABLE (scripts print
 *       it where control must not get, e.g. after a pcall of a fatal error).
 *
 * Layer: tests/tools; uses only the runtime's public API. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua/rt.h"

/* The test driver: runs as the main task; the script's source and name come
 * in through globals that the driver removes before the script runs. */
static const char driver[] =
    "local src, name, timeout = __LUARUN_SRC, __LUARUN_NAME, __LUARUN_TIMEOUT\n"
    "local report = __LUARUN_REPORT\n"
    "__LUARUN_SRC, __LUARUN_NAME, __LUARUN_TIMEOUT, __LUARUN_REPORT = nil, nil, nil, nil\n"
    "local spawn, newch, select, after = coroutine.spawn, channel.new, channel.select, "
    "time.after\n"
    "local xpcall, tostring, print, ipairs = xpcall, tostring, print, ipairs\n"
    "local tests = {}\n"
    "function test(n, f) tests[#tests + 1] = {n, f} end\n"
    "local chunk, err = load(src, '@' .. name, 't')\n"
    "if not chunk then error(err, 0) end\n"
    "chunk()\n"
    "local passed, failed = 0, 0\n"
    "for _, t in ipairs(tests) do\n"
    "  local done = newch(1)\n"
    "  spawn(function()\n"
    "    local ok, e = xpcall(t[2], function(m) return m end)\n"
    "    done:send({ok, e})\n"
    "  end)\n"
    "  local r = select{done:case_receive(), after(timeout):case_receive()}\n"
    "  if r.channel == done and r.value[1] then\n"
    "    passed = passed + 1\n"
    "    print('ok - ' .. name .. ': ' .. t[1])\n"
    "  else\n"
    "    failed = failed + 1\n"
    "    local why = r.channel == done and tostring(r.value[2]) or 'timed out'\n"
    "    print('not ok - ' .. name .. ': ' .. t[1] .. ': ' .. why)\n"
    "  end\n"
    "end\n"
    "report(passed, failed)\n";

/* Filled by the driver's report(). */
struct results {
    int passed; /* cases that passed */
    int failed; /* cases that failed */
    int got;    /* 1 once report() ran */
};

static int lreport(lua_State *L)
{
    struct results *r = lua_touserdata(L, lua_upvalueindex(1));
    r->passed = (int)luaL_checkinteger(L, 1);
    r->failed = (int)luaL_checkinteger(L, 2);
    r->got = 1;
    return 0;
}

/* Expect mode: a script prints this marker on a path it must never reach. */
#define MARKER "UNREACHABLE"

/* Output sink for expect mode: echoes and remembers whether the marker was
 * printed. */
struct watch {
    int seen; /* 1 once MARKER appeared in normal output */
};

static void watch_output(void *ctx, int is_err, const char *s, size_t n)
{
    struct watch *w = ctx;
    fwrite(s, 1, n, is_err ? stderr : stdout);
    if (!is_err && memmem(s, n, MARKER, sizeof MARKER - 1)) w->seen = 1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Prints the first line of s (errors carry tracebacks after it). */
static void print_first_line(const char *s)
{
    const char *nl = strchr(s, '\n');
    printf("%.*s", nl ? (int)(nl - s) : (int)strlen(s), s);
}

int main(int argc, char **argv)
{
    struct rt_config cfg = {.mem_limit = 64u << 20, .cpu_limit_ms = 60000};
    const char *expect = NULL;
    double timeout = 10;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "luarun: %s needs a value\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--mem") == 0)
            cfg.mem_limit = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--cpu") == 0)
            cfg.cpu_limit_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--expect-error") == 0)
            expect = argv[++i];
        else {
            fprintf(stderr, "luarun: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: luarun [--mem BYTES] [--cpu MS] [--timeout S] "
                        "[--expect-error REGEX] script.lua ...\n");
        return 2;
    }
    regex_t re;
    if (expect && regcomp(&re, expect, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "luarun: bad regex %s\n", expect);
        return 2;
    }
    int passed = 0, failed = 0;
    for (; i < argc; i++) {
        const char *path = argv[i];
        size_t len = 0;
        char *src = read_file(path, &len);
        if (!src) {
            printf("not ok - %s: cannot read the file\n", path);
            failed++;
            continue;
        }
        struct rt *rt = rt_new(&cfg);
        if (!rt) {
            printf("not ok - %s: cannot create the runtime\n", path);
            failed++;
            free(src);
            continue;
        }
        if (expect) {
            char chunk[512];
            struct watch w = {0};
            snprintf(chunk, sizeof chunk, "@%s", path);
            rt_set_output(rt, watch_output, &w);
            int st = rt_run(rt, chunk, src, len);
            const char *err = rt_last_error(rt);
            if (w.seen) {
                printf("not ok - %s: reached code after the error (printed " MARKER ")\n", path);
                failed++;
            } else if (st != RT_OK && regexec(&re, err, 0, NULL, 0) == 0) {
                printf("ok - %s: ended with the expected error (", path);
                print_first_line(err);
                printf(")\n");
                passed++;
            } else {
                printf("not ok - %s: expected an error matching /%s/, got status %d: ", path,
                       expect, st);
                print_first_line(err);
                printf("\n");
                failed++;
            }
        } else {
            struct results res = {0, 0, 0};
            lua_State *L = rt_lua(rt);
            lua_pushlstring(L, src, len);
            lua_setglobal(L, "__LUARUN_SRC");
            lua_pushstring(L, path);
            lua_setglobal(L, "__LUARUN_NAME");
            lua_pushinteger(L, (lua_Integer)(timeout * 1e9));
            lua_setglobal(L, "__LUARUN_TIMEOUT");
            lua_pushlightuserdata(L, &res);
            lua_pushcclosure(L, lreport, 1);
            lua_setglobal(L, "__LUARUN_REPORT");
            int st = rt_run(rt, "=luarun", driver, sizeof driver - 1);
            passed += res.passed;
            failed += res.failed;
            if (st != RT_OK || !res.got) {
                printf("not ok - %s: run ended with status %d: %s\n", path, st, rt_last_error(rt));
                failed++;
            }
        }
        fflush(stdout);
        rt_free(rt);
        free(src);
    }
    if (expect) regfree(&re);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

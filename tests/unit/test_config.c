/* Unit tests of the operator configuration parser (broker/config.c) and the
 * quota token buckets (broker/quota.c): values, defaults, compiled rules and
 * address classes, and that every error comes as file:line with nothing
 * returned. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "broker/addr.h"
#include "broker/config.h"
#include "broker/policy.h"
#include "broker/quota.h"

static struct brk_cfgfile *parse_ok(const char *text)
{
    struct brk_cfgfile *c = NULL;
    char *errors = NULL;
    int n = brk_cfg_parse("/etc/wshost/t.conf", text, strlen(text), BRK_CFG_NO_FILE_CHECKS, &c,
                          &errors);
    if (n) {
        fprintf(stderr, "unexpected errors:\n%s", errors);
        free(errors);
    }
    CU_ASSERT_EQUAL(n, 0);
    return c;
}

/* Parses text expecting errors; returns the error text (caller frees). */
static char *parse_bad(const char *text, int *n_out)
{
    struct brk_cfgfile *c = NULL;
    char *errors = NULL;
    int n = brk_cfg_parse("t.conf", text, strlen(text), BRK_CFG_NO_FILE_CHECKS, &c, &errors);
    CU_ASSERT(n > 0);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(errors);
    if (n_out) *n_out = n;
    return errors;
}

static void test_values(void)
{
    uint64_t v;
    CU_ASSERT(brk_cfg_parse_duration("250", &v) == 0 && v == 250);
    CU_ASSERT(brk_cfg_parse_duration("250ms", &v) == 0 && v == 250);
    CU_ASSERT(brk_cfg_parse_duration("5s", &v) == 0 && v == 5000);
    CU_ASSERT(brk_cfg_parse_duration("1m30s", &v) == 0 && v == 90000);
    CU_ASSERT(brk_cfg_parse_duration("2h", &v) == 0 && v == 7200000);
    CU_ASSERT(brk_cfg_parse_duration("", &v) != 0);
    CU_ASSERT(brk_cfg_parse_duration("5x", &v) != 0);
    CU_ASSERT(brk_cfg_parse_duration("-5s", &v) != 0);
    CU_ASSERT(brk_cfg_parse_duration("s", &v) != 0);
    CU_ASSERT(brk_cfg_parse_size("64K", &v) == 0 && v == 65536);
    CU_ASSERT(brk_cfg_parse_size("16M", &v) == 0 && v == 16u << 20);
    CU_ASSERT(brk_cfg_parse_size("1G", &v) == 0 && v == 1u << 30);
    CU_ASSERT(brk_cfg_parse_size("12", &v) == 0 && v == 12);
    CU_ASSERT(brk_cfg_parse_size("12KB", &v) != 0);
    CU_ASSERT(brk_cfg_parse_size("-1", &v) != 0);
    CU_ASSERT(brk_cfg_parse_size("99999999999999999999", &v) != 0);
    CU_ASSERT(brk_cfg_parse_size("99999999999G", &v) != 0);
}

static const char full[] =
    "# comment\n"
    "[broker]\n"
    "admin_socket = /run/wshost/admin.sock\n"
    "audit_log = audit.jsonl   # relative: next to the file\n"
    "drain_timeout = 3s\n"
    "ring_bytes = 1M\n"
    "\n"
    "[tenant alice]\n"
    "allow_addresses = public,loopback\n"
    "rule = allow websocket.connect *\n"
    "rule = allow websocket.connect.url wss://*.example.com/* ws://127.0.0.1:9/x\n"
    "rule = deny websocket.connect.url wss://evil.example.com/*\n"
    "max_connections = 3\n"
    "connects_per_sec = 2\n"
    "max_read_limit = 1M\n"
    "max_channel_capacity = 50\n"
    "max_compression = no_context\n"
    "memory = 16M\n"
    "cpu = 1m\n"
    "wall = 90s\n"
    "log_lines_per_sec = 5\n"
    "bytes_in_per_sec = 64K\n"
    "\n"
    "[tenant bob]\n"
    "\n"
    "[script alice/feed]\n"
    "path = feed.lua\n"
    "restart = always\n"
    "restart_delay = 100ms\n"
    "restart_max_delay = 2s\n"
    "start_limit = 3\n"
    "start_window = 10s\n"
    "[script bob/x]\n"
    "path = /srv/x.lua\n"
    "autostart = no\n";

static void test_full_file(void)
{
    struct brk_cfgfile *c = parse_ok(full);
    if (!c) return;
    CU_ASSERT_STRING_EQUAL(c->admin_socket, "/run/wshost/admin.sock");
    CU_ASSERT_STRING_EQUAL(c->audit_log, "/etc/wshost/audit.jsonl");
    CU_ASSERT_EQUAL(c->drain_timeout_ms, 3000);
    CU_ASSERT_EQUAL(c->ring_bytes, 1u << 20);
    CU_ASSERT_EQUAL(c->n_tenants, 2);
    CU_ASSERT_EQUAL(c->n_scripts, 2);
    CU_ASSERT_EQUAL(c->n_rules, 4);
    const struct brk_cfg_tenant *a = brk_cfg_tenant(c, "alice");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->line, 8);
    CU_ASSERT_EQUAL(a->addr_mask, BRK_ADDR_BIT(BRK_ADDR_PUBLIC) | BRK_ADDR_BIT(BRK_ADDR_LOOPBACK));
    CU_ASSERT_EQUAL(a->quota.max_connections, 3);
    CU_ASSERT_EQUAL(a->quota.connects_per_sec, 2);
    CU_ASSERT_EQUAL(a->quota.max_read_limit, 1u << 20);
    CU_ASSERT_EQUAL(a->quota.max_channel_capacity, 50);
    CU_ASSERT_EQUAL(a->quota.max_compression, 1);
    CU_ASSERT_EQUAL(a->quota.memory, 16u << 20);
    CU_ASSERT_EQUAL(a->quota.cpu_ms, 60000);
    CU_ASSERT_EQUAL(a->quota.wall_ms, 90000);
    CU_ASSERT_EQUAL(a->quota.log_lines_per_sec, 5);
    CU_ASSERT_EQUAL(a->quota.bytes_in_per_sec, 65536);
    /* Not set: the default. */
    struct brk_quota d;
    brk_quota_defaults(&d);
    CU_ASSERT_EQUAL(a->quota.max_workers, d.max_workers);
    CU_ASSERT_EQUAL(a->quota.bytes_out_per_sec, d.bytes_out_per_sec);
    /* Rules compiled, labelled file:line; deny wins; default deny. */
    struct pol_decision pd;
    CU_ASSERT_EQUAL(pol_eval(&a->policy, POL_ACT_CONNECT, "*", &pd), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&a->policy, POL_ACT_URL, "wss://api.example.com/v1", &pd), POL_ALLOW);
    CU_ASSERT_STRING_EQUAL(pd.rule->label, "/etc/wshost/t.conf:11");
    CU_ASSERT_EQUAL(pol_eval(&a->policy, POL_ACT_URL, "ws://127.0.0.1:9/x", &pd), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&a->policy, POL_ACT_URL, "wss://evil.example.com/a", &pd), POL_DENY);
    CU_ASSERT_STRING_EQUAL(pd.rule->label, "/etc/wshost/t.conf:12");
    CU_ASSERT_EQUAL(pol_eval(&a->policy, POL_ACT_URL, "wss://example.org/", &pd), POL_DENY);
    CU_ASSERT_PTR_NULL(pd.rule);
    /* bob: defaults, no rules -> everything denied, public addresses only. */
    const struct brk_cfg_tenant *b = brk_cfg_tenant(c, "bob");
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->addr_mask, BRK_ADDR_DEFAULT_MASK);
    CU_ASSERT_EQUAL(b->quota.max_connections, d.max_connections);
    CU_ASSERT_EQUAL(pol_eval(&b->policy, POL_ACT_CONNECT, "*", &pd), POL_DENY);
    /* Scripts. */
    const struct brk_cfg_script *s = brk_cfg_script(c, "alice", "feed");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_EQUAL(s->tenant, a);
    CU_ASSERT_STRING_EQUAL(s->path, "/etc/wshost/feed.lua");
    CU_ASSERT_EQUAL(s->restart, BRK_RESTART_ALWAYS);
    CU_ASSERT_EQUAL(s->restart_delay_ms, 100);
    CU_ASSERT_EQUAL(s->restart_max_delay_ms, 2000);
    CU_ASSERT_EQUAL(s->start_limit, 3);
    CU_ASSERT_EQUAL(s->start_window_ms, 10000);
    CU_ASSERT_EQUAL(s->autostart, 1);
    const struct brk_cfg_script *x = brk_cfg_script(c, "bob", "x");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_STRING_EQUAL(x->path, "/srv/x.lua");
    CU_ASSERT_EQUAL(x->restart, BRK_RESTART_ON_FAILURE);
    CU_ASSERT_EQUAL(x->autostart, 0);
    CU_ASSERT_PTR_NULL(brk_cfg_script(c, "bob", "feed"));
    brk_cfg_free(c);
}

/* Every error has its own line: "t.conf:LINE: ..." for each. */
static void test_errors_with_lines(void)
{
    const char *text = "[broker]\n"                                    /* 1 */
                       "bogus = 1\n"                                   /* 2 */
                       "[tenant a]\n"                                  /* 3 */
                       "max_connections = lots\n"                      /* 4 */
                       "rule = allow websocket.connect.url wss://x*\n" /* 5 */
                       "rule = permit websocket.connect *\n"           /* 6 */
                       "allow_addresses = public,moon\n"               /* 7 */
                       "memory = 1K\n"                                 /* 8 */
                       "max_compression = ultra\n"                     /* 9 */
                       "max_connections = 4\n"                         /* 10 twice (4) */
                       "max_connections = 5\n"                         /* 11 duplicate */
                       "[tenant a]\n"                                  /* 12 */
                       "[script b/s]\n"                                /* 13 */
                       "restart = sometimes\n"                         /* 14 */
                       "junk line\n"                                   /* 15 */
                       "[weird]\n"                                     /* 16 */
                       "rule = allow websocket.nothing *\n";           /* 17 */
    int n = 0;
    char *e = parse_bad(text, &n);
    if (!e) return;
    const char *want[] = {"t.conf:2: unknown key 'bogus'",
                          "t.conf:4: max_connections: 'lots' is not a number",
                          "t.conf:5: rule: websocket.connect.url wss://x*:",
                          "t.conf:6: rule: effect 'permit'",
                          "t.conf:7: allow_addresses:",
                          "t.conf:8: memory: 1K is out of range",
                          "t.conf:9: max_compression: 'ultra'",
                          "t.conf:10: 'max_connections' is set twice",
                          "t.conf:11: 'max_connections' is set twice",
                          "t.conf:12: tenant 'a' is defined twice (first at line 3)",
                          "t.conf:14: restart: 'sometimes'",
                          "t.conf:15: expected 'key = value'",
                          "t.conf:16: unknown section [weird]",
                          "t.conf:13: script 'b/s': no [tenant b] section",
                          "t.conf:13: script 'b/s': 'path' is missing"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(e, want[i])) fprintf(stderr, "missing error: %s\nin:\n%s", want[i], e);
        CU_ASSERT_PTR_NOT_NULL(strstr(e, want[i]));
    }
    /* Line 17 is in the ignored [weird] section: no error for it. */
    CU_ASSERT_PTR_NULL(strstr(e, "t.conf:17:"));
    CU_ASSERT_EQUAL(n, (int)(sizeof want / sizeof want[0]));
    /* Every line of the report has the file:line: form. */
    for (char *l = e; *l; l = strchr(l, '\n') + 1) {
        CU_ASSERT_EQUAL(strncmp(l, "t.conf:", 7), 0);
        if (!strchr(l, '\n')) break;
    }
    free(e);
}

static void test_misc_errors(void)
{
    struct {
        const char *text, *want;
    } cases[] = {
        {"max_workers = 3\n", "t.conf:1: 'max_workers' outside any section"},
        {"[tenant]\n", "t.conf:1: [tenant NAME]"},
        {"[tenant ../x]\n", "t.conf:1: [tenant NAME]"},
        {"[tenant a\n", "t.conf:1: section header without a closing ']'"},
        {"[script a]\n", "t.conf:1: [script TENANT/NAME]"},
        {"[broker]\n[broker]\n", "t.conf:2: [broker] appears twice"},
        {"[tenant a]\nrule = allow websocket.connect\n", "t.conf:2: rule: expected"},
        {"[tenant a]\nrule = allow websocket.connect ws://a/\n", "t.conf:2: rule:"},
        {"[tenant a]\nmax_read_limit = 200M\n", "t.conf:2: max_read_limit: 200M is out of range"},
        {"[tenant a]\nmax_channel_capacity = 0\n", "t.conf:2: max_channel_capacity: 0 is out"},
        {"[tenant a]\ncpu = 5 parsecs\n", "t.conf:2: cpu: '5 parsecs' is not a duration"},
        {"[tenant a]\nmemory =\n", "t.conf:2: memory: missing value"},
        {"[broker]\nring_bytes = 100K\n", "t.conf:2: ring_bytes: 100K is not a power of two"},
        {"[tenant a]\n[script a/s]\npath = x.lua\nrestart_delay = 5s\nrestart_max_delay = 1s\n",
         "t.conf:2: script 'a/s': restart_max_delay is below restart_delay"},
        {"[tenant a]\n[script a/s]\npath = x.lua\n[script a/s]\npath = y.lua\n",
         "t.conf:4: script 'a/s' is defined twice"},
        {"[tenant a]\nx\001y = 1\n", "t.conf:2: control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *e = parse_bad(cases[i].text, NULL);
        if (!e) continue;
        if (!strstr(e, cases[i].want))
            fprintf(stderr, "case %zu: want '%s' in:\n%s", i, cases[i].want, e);
        CU_ASSERT_PTR_NOT_NULL(strstr(e, cases[i].want));
        free(e);
    }
    /* An embedded NUL is reported, not a truncation. */
    static const char nul[] = "[tenant a]\nmax_workers = 1\0junk\n";
    struct brk_cfgfile *c = NULL;
    char *errors = NULL;
    CU_ASSERT(brk_cfg_parse("t.conf", nul, sizeof nul - 1, BRK_CFG_NO_FILE_CHECKS, &c, &errors) >
              0);
    CU_ASSERT_PTR_NOT_NULL(errors && strstr(errors, "t.conf:2: NUL byte"));
    free(errors);
}

static void test_file_checks(void)
{
    /* With file checks on, a missing script is an error at its path line. */
    const char *text = "[tenant a]\n[script a/s]\npath = /nonexistent/dir/s.lua\n";
    struct brk_cfgfile *c = NULL;
    char *errors = NULL;
    int n = brk_cfg_parse("t.conf", text, strlen(text), 0, &c, &errors);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(errors && strstr(errors, "t.conf:3: path: /nonexistent/dir/s.lua:"));
    free(errors);
    n = brk_cfg_load("/nonexistent/wshost.conf", 0, &c, &errors);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_PTR_NOT_NULL(errors && strstr(errors, "/nonexistent/wshost.conf:0: cannot open"));
    free(errors);
}

static void test_buckets(void)
{
    struct brk_bucket b = {0};
    int64_t t0 = 1000000000;
    /* Starts full (burst 3), then refuses until time refills it. */
    CU_ASSERT(brk_bucket_take(&b, 3, 3, 1, t0));
    CU_ASSERT(brk_bucket_take(&b, 3, 3, 1, t0));
    CU_ASSERT(brk_bucket_take(&b, 3, 3, 1, t0));
    CU_ASSERT(!brk_bucket_take(&b, 3, 3, 1, t0));
    CU_ASSERT(!brk_bucket_take(&b, 3, 3, 1, t0 + 100000000)); /* 0.3 tokens */
    CU_ASSERT(brk_bucket_take(&b, 3, 3, 1, t0 + 400000000));  /* 1.2 tokens */
    /* Rate 0 is unlimited. */
    struct brk_bucket u = {0};
    for (int i = 0; i < 1000; i++)
        CU_ASSERT(brk_bucket_take(&u, 0, 0, 1, t0));
    /* Charging into debt gives the time to pay it back. */
    struct brk_bucket d = {0};
    CU_ASSERT_EQUAL(brk_bucket_charge(&d, 1000, 1000, 500, t0), 0);
    int64_t ms = brk_bucket_charge(&d, 1000, 1000, 1500, t0); /* 1000 in debt: 1 s */
    CU_ASSERT(ms >= 1000 && ms <= 1001);
    CU_ASSERT_EQUAL(brk_bucket_charge(&d, 1000, 1000, 0, t0 + 1001000000), 0);
}

int suite_config(void)
{
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    if (!s || !CU_add_test(s, "durations and sizes", test_values) ||
        !CU_add_test(s, "a complete file", test_full_file) ||
        !CU_add_test(s, "every error with its line", test_errors_with_lines) ||
        !CU_add_test(s, "more errors", test_misc_errors) ||
        !CU_add_test(s, "files are checked", test_file_checks) ||
        !CU_add_test(s, "token buckets", test_buckets))
        return CU_get_error();
    return 0;
}

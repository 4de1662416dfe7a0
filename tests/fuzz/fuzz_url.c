/* libFuzzer target: URL canonicalisation (broker/url.c) and the policy
 * decision on its result (broker/policy.c), as the broker does for every
 * CONNECT.
 *
 * Checks besides "no crash":
 * - every output string is NUL-terminated, at most BRK_URL_MAX bytes, and
 *   free of controls, spaces, backslashes, '#' and non-ASCII;
 * - canonicalisation is idempotent: parsing the canonical URL succeeds and
 *   gives the same canonical URL, host, port and target;
 * - display is the canonical URL without the query;
 * - the policy can only allow what it names: "allow wss://example.com/api/" "*"
 *   allows only host example.com, port 443, TLS, targets under /api/;
 *   "allow ws://" "*.example.net:8080/" "*" only hosts ending in .example.net
 *   (not the bare domain, not IP literals), port 8080, no TLS; a deny rule
 *   for "ws://127.0.0.1/" "*" wins over allow "*" for every URL with host
 *   127.0.0.1 and port 80.
 * A broken property aborts (a finding, reported with the input).
 *
 * Layer: tests/fuzz. Pure C. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/policy.h"
#include "broker/url.h"

static struct pol_policy pol_prefix = POL_POLICY_INIT; /* allow wss://example.com/api/ * */
static struct pol_policy pol_wild = POL_POLICY_INIT;   /* allow ws:// *.example.net:8080/ * */
static struct pol_policy pol_deny = POL_POLICY_INIT;   /* allow *, deny ws://127.0.0.1/ * */
static struct brk_url u1, u2;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_url: property failed: %s\n", #c);                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void add(struct pol_policy *p, const char *act, const char *pat, int eff)
{
    char err[256];
    if (pol_add_rule(p, act, pat, eff, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_url: rule %s: %s\n", pat, err);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    add(&pol_prefix, POL_ACT_URL, "wss://example.com/api/*", POL_ALLOW);
    add(&pol_wild, POL_ACT_URL, "ws://*.example.net:8080/*", POL_ALLOW);
    add(&pol_deny, "*", "*", POL_ALLOW);
    add(&pol_deny, POL_ACT_URL, "ws://127.0.0.1/*", POL_DENY);
    return 0;
}

static void check_str(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    CHECK(n < cap);
    CHECK(n <= BRK_URL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        CHECK(c > 0x20 && c < 0x7f && c != '\\' && c != '#');
    }
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !memcmp(s + a - b, suf, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > BRK_URL_MAX + 64) return 0;
    char err[256];
    int rc = brk_url_parse((const char *)data, size, &u1, err, sizeof err);
    if (rc != 0) {
        CHECK(rc < 0);
        CHECK(strnlen(err, sizeof err) < sizeof err);
        return 0;
    }
    check_str(u1.canonical, sizeof u1.canonical);
    check_str(u1.display, sizeof u1.display);
    check_str(u1.target, sizeof u1.target);
    check_str(u1.host_header, sizeof u1.host_header);
    CHECK(strnlen(u1.host, sizeof u1.host) < sizeof u1.host);
    CHECK(u1.host[0] != 0 && u1.port != 0);
    CHECK(u1.target[0] == '/');
    CHECK(u1.secure == !strcmp(u1.scheme, "wss"));
    CHECK(!strchr(u1.host_header, '@'));
    /* display = canonical up to the query */
    const char *q = strchr(u1.canonical, '?');
    size_t dl = q ? (size_t)(q - u1.canonical) : strlen(u1.canonical);
    CHECK(strlen(u1.display) == dl && !strncmp(u1.display, u1.canonical, dl));

    /* idempotence */
    rc = brk_url_parse(u1.canonical, strlen(u1.canonical), &u2, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "fuzz_url: canonical '%s' does not parse: %s\n", u1.canonical, err);
    CHECK(rc == 0);
    if (strcmp(u1.canonical, u2.canonical))
        fprintf(stderr, "fuzz_url: '%s' -> '%s'\n", u1.canonical, u2.canonical);
    CHECK(!strcmp(u1.canonical, u2.canonical));
    CHECK(!strcmp(u1.host, u2.host) && u1.port == u2.port && !strcmp(u1.target, u2.target));
    CHECK(u1.secure == u2.secure && u1.host_is_ip == u2.host_is_ip);

    /* the policy allows only what it names */
    struct pol_decision d;
    if (pol_eval(&pol_prefix, POL_ACT_URL, u1.canonical, &d) == POL_ALLOW) {
        CHECK(!strcmp(u1.host, "example.com") && u1.port == 443 && u1.secure);
        CHECK(!strncmp(u1.target, "/api/", 5));
    }
    if (pol_eval(&pol_wild, POL_ACT_URL, u1.canonical, &d) == POL_ALLOW) {
        CHECK(ends_with(u1.host, ".example.net") && strlen(u1.host) > strlen(".example.net"));
        CHECK(!u1.host_is_ip && u1.port == 8080 && !u1.secure);
    }
    int e = pol_eval(&pol_deny, POL_ACT_URL, u1.canonical, &d);
    if (!strcmp(u1.host, "127.0.0.1") && u1.port == 80 && !u1.secure)
        CHECK(e == POL_DENY);
    else
        CHECK(e == POL_ALLOW);
    char expl[512];
    pol_explain(&pol_deny, POL_ACT_URL, u1.canonical, expl, (size % sizeof expl) + 1);

    /* the host canonicaliser on the raw bytes (no crash) */
    char host[BRK_URL_HOST_MAX + 1];
    int is_ip;
    brk_url_canon_host((const char *)data, size, host, size % 2 ? sizeof host : 8, &is_ip, err,
                       sizeof err);
    return 0;
}

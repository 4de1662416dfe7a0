/* libFuzzer target: policy rule patterns (pol_add_rule) and decisions on
 * arbitrary resources (pol_eval, pol_explain).
 *
 * Input: one control byte, then a pattern and a resource separated by a
 * newline (pattern bytes after the first NUL are ignored, as a C string).
 * Checks besides "no crash":
 * - a refused pattern leaves the policy unchanged and explains why;
 * - an accepted exact pattern (no '*') allows its own canonical form and
 *   nothing that is not a canonical URL equal to it;
 * - a deny rule for a pattern wins over allow "*" on the pattern's own form;
 * - an empty policy denies everything, and pol_explain never overflows.
 *
 * Layer: tests/fuzz. Pure C. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/policy.h"
#include "broker/url.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_policy: property failed: %s\n", #c);                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct brk_url u;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 20000) return 0;
    uint8_t ctl = data[0];
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    size_t plen = nl ? (size_t)(nl - data - 1) : size - 1;
    char *pat = malloc(plen + 1);
    size_t rlen = nl ? size - 1 - plen - 1 : 0;
    char *res = malloc(rlen + 1);
    if (!pat || !res) {
        free(pat);
        free(res);
        return 0;
    }
    memcpy(pat, data + 1, plen);
    pat[plen] = 0;
    if (rlen) memcpy(res, nl + 1, rlen);
    res[rlen] = 0;

    static const char *const acts[] = {POL_ACT_URL, POL_ACT_CONNECT, "*", "websocket.bogus"};
    const char *act = acts[ctl & 3];
    int eff = ctl & 4 ? POL_DENY : POL_ALLOW;
    char err[256];
    struct pol_policy p = POL_POLICY_INIT;
    struct pol_decision d;
    CHECK(pol_eval(&p, POL_ACT_URL, res, &d) == POL_DENY);
    int rc = pol_add_rule(&p, act, (ctl & 8) && !plen ? NULL : pat, eff, ctl & 16 ? "lbl" : NULL,
                          err, sizeof err);
    if (rc != 0) {
        CHECK(p.n == 0);
        CHECK(strnlen(err, sizeof err) < sizeof err && err[0]);
    } else {
        CHECK(p.n == 1);
        const struct pol_rule *r = &p.rules[0];
        /* a URL rule with an exact pattern (no '*' written or kept) */
        int exact = plen && !strchr(pat, '*') && r->resource && !strchr(r->resource, '*') &&
                    (!strcmp(r->action, POL_ACT_URL) || !strcmp(r->action, "*"));
        if (exact && eff == POL_ALLOW) {
            /* exact pattern: its canonical form is allowed */
            CHECK(pol_eval(&p, POL_ACT_URL, r->resource, &d) == POL_ALLOW);
            /* and a resource is allowed only if it is that string */
            if (pol_eval(&p, POL_ACT_URL, res, &d) == POL_ALLOW) CHECK(!strcmp(res, r->resource));
        }
        if (exact && eff == POL_DENY) {
            char e2[256];
            CHECK(pol_add_rule(&p, "*", "*", POL_ALLOW, NULL, e2, sizeof e2) == 0);
            CHECK(pol_eval(&p, POL_ACT_URL, r->resource, &d) == POL_DENY);
        }
    }
    /* a resource that parses: evaluate its canonical form too */
    if (brk_url_parse(res, rlen, &u, err, sizeof err) == 0)
        pol_eval(&p, POL_ACT_URL, u.canonical, &d);
    pol_eval(&p, POL_ACT_URL, res, &d);
    pol_eval(&p, POL_ACT_CONNECT, NULL, &d);
    pol_eval(&p, act, res, &d);
    CHECK(strnlen(d.reason, sizeof d.reason) < sizeof d.reason);
    char expl[300];
    size_t cap = (size_t)(ctl >> 5) * 40 + 1;
    memset(expl, 'x', sizeof expl);
    pol_explain(&p, POL_ACT_URL, res, expl, cap);
    CHECK(strnlen(expl, cap) < cap);
    pol_free(&p);
    free(pat);
    free(res);
    return 0;
}

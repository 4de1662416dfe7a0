/* CUnit suite "policy": rule validation and evaluation of broker/policy.c.
 *
 * Covers: deny beats allow (in either order), no rule means deny, the
 * websocket.connect action only matching "*", exact/prefix/host-wildcard URL
 * patterns and their attacks (host extension, port, scheme, look-alike IDN),
 * pattern canonicalisation, refusal of unsafe patterns at load time,
 * explanations and limits. */
#include "broker/policy.h"
#include "broker/url.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char errbuf[256];

static int add(struct pol_policy *p, const char *act, const char *res, int eff, const char *label)
{
    return pol_add_rule(p, act, res, eff, label, errbuf, sizeof errbuf);
}

/* Evaluates a URL after canonicalising it with the URL parser, as the broker does. */
static int eval_url(const struct pol_policy *p, const char *url)
{
    struct brk_url *u = malloc(sizeof *u);
    char err[200];
    int r = POL_DENY;
    if (!u) return -1;
    if (brk_url_parse(url, strlen(url), u, err, sizeof err) == 0)
        r = pol_eval(p, POL_ACT_URL, u->canonical, NULL);
    else
        r = -1;
    free(u);
    return r;
}

static void test_empty_denies(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    struct pol_decision d;
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    CU_ASSERT_EQUAL(d.effect, POL_DENY);
    CU_ASSERT_PTR_NULL(d.rule);
    CU_ASSERT_EQUAL(d.index, -1);
    CU_ASSERT_STRING_EQUAL(d.reason, "no rule allows it");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/", &d), POL_DENY);
    CU_ASSERT_STRING_EQUAL(d.reason, "no rule allows it");
    CU_ASSERT_EQUAL(pol_eval(NULL, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    pol_free(&p);
    pol_free(&p);
}

static void test_allow_url_shortcut(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    struct pol_decision d;
    CU_ASSERT_EQUAL_FATAL(
        pol_allow_url(&p, "wss://example.com/*", "--allow", errbuf, sizeof errbuf), 0);
    CU_ASSERT_EQUAL(p.n, 2);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_ALLOW);
    CU_ASSERT_EQUAL(d.index, 0);
    CU_ASSERT_STRING_EQUAL(d.rule->label, "--allow");
    CU_ASSERT_STRING_EQUAL(d.reason, "allowed by --allow");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/chat", &d), POL_ALLOW);
    CU_ASSERT_EQUAL(d.index, 1);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/", &d), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/?x=1", &d), POL_ALLOW);
    /* Host extension, other port, other scheme, other host. */
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com.evil.net/", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.community/", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com:8443/", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://example.com/", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://sub.example.com/", &d), POL_DENY);
    /* Resources must already be canonical and valid. */
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com", &d), POL_DENY);
    CU_ASSERT_STRING_EQUAL(d.reason, "resource is not a canonical URL");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "WSS://example.com/", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://u@example.com/", &d), POL_DENY);
    CU_ASSERT(strstr(d.reason, "not a valid URL") != NULL);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, NULL, &d), POL_DENY);
    /* Through the parser, as the broker uses it. */
    CU_ASSERT_EQUAL(eval_url(&p, "WSS://EXAMPLE.com:443/chat?x=1"), POL_ALLOW);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://example.com./a/../b"), POL_ALLOW);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://example.com.evil.net/"), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://example.com@evil.net/"), -1);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://evil.net#@example.com/"), -1);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://evil.net\\@example.com/"), -1);
    /* A bad pattern adds nothing. */
    CU_ASSERT_EQUAL(pol_allow_url(&p, "wss://example.com*", NULL, errbuf, sizeof errbuf),
                    POL_EINVAL);
    CU_ASSERT_EQUAL(p.n, 2);
    pol_free(&p);
    CU_ASSERT_EQUAL(p.n, 0);
    CU_ASSERT_PTR_NULL(p.rules);
}

static void test_deny_beats_allow(void)
{
    for (int order = 0; order < 2; order++) {
        struct pol_policy p = POL_POLICY_INIT;
        struct pol_decision d;
        if (order == 0) {
            CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "*", POL_ALLOW, "allow-all"), 0);
            CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://evil.com/*", POL_DENY, "no-evil"), 0);
        } else {
            CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://evil.com/*", POL_DENY, "no-evil"), 0);
            CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "*", POL_ALLOW, "allow-all"), 0);
        }
        CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://evil.com/x", &d), POL_DENY);
        CU_ASSERT_EQUAL(d.index, order == 0 ? 1 : 0);
        CU_ASSERT_STRING_EQUAL(d.rule->label, "no-evil");
        CU_ASSERT_STRING_EQUAL(d.reason, "denied by no-evil");
        CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://good.com/", &d), POL_ALLOW);
        CU_ASSERT_STRING_EQUAL(d.rule->label, "allow-all");
        pol_free(&p);
    }
    /* Deny on the connect action disables everything, whatever the URL rules say. */
    struct pol_policy p = POL_POLICY_INIT;
    CU_ASSERT_EQUAL(add(&p, "*", "*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, "*", POL_DENY, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://a.b/", NULL), POL_ALLOW);
    pol_free(&p);
}

static void test_connect_needs_star(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    struct pol_decision d;
    /* Only URL rules: the connect action itself is not allowed. */
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    CU_ASSERT_STRING_EQUAL(d.reason, "no rule allows it");
    /* websocket.connect refuses any resource but "*" at load time. */
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, "wss://a.b/", POL_ALLOW, NULL), POL_EINVAL);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, "", POL_ALLOW, NULL), POL_EINVAL);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, NULL, POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, "ignored", &d), POL_ALLOW);
    pol_free(&p);

    /* Action "*" with a URL pattern applies to the URL action only. */
    CU_ASSERT_EQUAL(add(&p, "*", "wss://a.b/", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://a.b/", &d), POL_ALLOW);
    /* Action "*" with "*" allows both. */
    CU_ASSERT_EQUAL(add(&p, "*", "*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_ALLOW);
    CU_ASSERT_EQUAL(d.index, 1);
    /* Unknown actions: refused when loading, denied when evaluating. */
    CU_ASSERT_EQUAL(add(&p, "websocket.listen", "*", POL_ALLOW, NULL), POL_EINVAL);
    CU_ASSERT_EQUAL(add(&p, NULL, "*", POL_ALLOW, NULL), POL_EINVAL);
    CU_ASSERT_EQUAL(add(&p, "Websocket.Connect", "*", POL_ALLOW, NULL), POL_EINVAL);
    CU_ASSERT_EQUAL(pol_eval(&p, "websocket.listen", "*", &d), POL_DENY);
    CU_ASSERT_STRING_EQUAL(d.reason, "unknown action");
    CU_ASSERT_EQUAL(pol_eval(&p, "*", "*", &d), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, NULL, NULL, &d), POL_DENY);
    CU_ASSERT_EQUAL(add(&p, "*", "*", 7, NULL), POL_EINVAL);
    pol_free(&p);
}

static void test_exact_and_prefix(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://x.org/chat", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/chat", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/chat?a", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/chat/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/chatroom", NULL), POL_DENY);
    pol_free(&p);

    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://x.org/api*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "ws://y.org/v1/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "ws://z.org?*", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[2].resource, "ws://z.org/?*");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/api", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/apix", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/api/v2?q", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://x.org/ap", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://y.org/v1/", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://y.org/v1/a/b", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://y.org/v1", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://y.org/v10/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "ws://y.org/v1/../admin"), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "ws://y.org/v1/%2e%2e/admin"), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "ws://y.org/v1/%2E%2E%2Fadmin"), POL_ALLOW); /* %2F stays */
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://z.org/?a=1", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://z.org/", NULL), POL_DENY);
    pol_free(&p);
}

static void test_pattern_canonicalisation(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "WSS://Example.COM:443/x", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[0].resource, "wss://example.com/x");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/x", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com./%7Euser/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[1].resource, "wss://example.com/~user/*");
    CU_ASSERT_EQUAL(eval_url(&p, "wss://EXAMPLE.com/%7euser/a"), POL_ALLOW);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "ws://[0:0::1]:8080/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[2].resource, "ws://[::1]:8080/*");
    CU_ASSERT_EQUAL(eval_url(&p, "ws://[::1]:8080/echo"), POL_ALLOW);
    CU_ASSERT_EQUAL(eval_url(&p, "ws://[::1]:8081/echo"), POL_DENY);
    pol_free(&p);

    /* IDN look-alike: Cyrillic 'a' is a different host. */
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://apple.com/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://\xd0\xb0pple.com/"), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://apple.com/"), POL_ALLOW);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL,
                        "wss://b\xc3\xbc"
                        "cher.de/*",
                        POL_ALLOW, NULL),
                    0);
    CU_ASSERT_STRING_EQUAL(p.rules[1].resource, "wss://xn--bcher-kva.de/*");
    CU_ASSERT_EQUAL(eval_url(&p, "wss://B\xc3\x9c"
                                 "CHER.DE/x"),
                    POL_ALLOW);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://bucher.de/x"), POL_DENY);
    pol_free(&p);
}

static void test_host_wildcard(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    CU_ASSERT_EQUAL_FATAL(add(&p, POL_ACT_URL, "wss://*.Example.com/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[0].resource, "wss://*.example.com/*");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://sub.example.com/x", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://a.b.example.com/", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://a.example.com/", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://evilexample.com/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com.evil.net/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://sub.example.com.evil.net/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://sub.example.com:444/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://sub.example.com/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://SUB.EXAMPLE.COM.:443/x"), POL_ALLOW);
    CU_ASSERT_EQUAL(eval_url(&p, "wss://sub.example.com@evil.net/"), -1);
    pol_free(&p);

    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://*.example.com:8443/api", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[0].resource, "wss://*.example.com:8443/api");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://s.example.com:8443/api", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://s.example.com:8443/api/x", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://s.example.com:8443/api?x", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://s.example.com/api", NULL), POL_DENY);
    pol_free(&p);

    /* Deny with a wildcard beats an allow-all. */
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "ws://*.internal.corp/*", POL_DENY, "no-internal"), 0);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://db.internal.corp/", NULL), POL_DENY);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "ws://internal.corp/", NULL), POL_ALLOW);
    pol_free(&p);
}

static void test_refused_patterns(void)
{
    static const char *const bad[] = {
        "wss://example.com*",       /* would match example.com.evil.net */
        "wss://example.com:*",      /* would match any port */
        "wss://example.com:80*",    /* would match :8080 */
        "wss://*",                  /* host wildcard without a domain */
        "wss://*.",                 /* empty domain */
        "wss://*./",                /* empty domain */
        "wss://*example.com/",      /* star not a whole label */
        "wss://a*.example.com/",    /* star inside a label */
        "wss://sub.*.example.com/", /* star not leftmost */
        "wss://example.com/a*b",    /* star in the middle */
        "wss://example.com/**",     /* two stars */
        "wss://*.1.2.3.4/",         /* wildcard over an IP */
        "wss://*.127.0.0.1/*",      /* wildcard over an IP */
        "wss://example.com/a/../*", /* dot segments in a prefix */
        "wss://example.com/a/..*",  /* partial dot segment */
        "wss://example.com/a/%2e%2E*",
        "wss://example.com/./*",
        "http://example.com/*",
        "example.com/*",
        "",
        "wss://u@example.com/*",
        "wss://e.com#x",
        "wss://2130706433/*",
        "wss://example.com/%zz",
        "*.example.com",
    };
    struct pol_policy p = POL_POLICY_INIT;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errbuf[0] = '\0';
        int r = add(&p, POL_ACT_URL, bad[i], POL_ALLOW, NULL);
        if (r != POL_EINVAL) fprintf(stderr, "\n  pattern '%s' accepted\n", bad[i]);
        CU_ASSERT_EQUAL(r, POL_EINVAL);
        CU_ASSERT(errbuf[0] != '\0');
    }
    CU_ASSERT_EQUAL(p.n, 0);
    /* Close relatives that are fine. */
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com/a/.well-known*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com/a/...*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com:8080/*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com/a/../b", POL_ALLOW, NULL), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[3].resource, "wss://example.com/b");
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com:8080/", NULL), POL_ALLOW);
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_URL, "wss://example.com:80800/", NULL), POL_DENY);
    pol_free(&p);
}

static void test_explain_and_labels(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    char buf[2048];
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, "*", POL_ALLOW, NULL), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com/*", POL_ALLOW, "policy.conf:3"), 0);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, "wss://example.com/admin*", POL_DENY, "policy.conf:4"), 0);
    CU_ASSERT_STRING_EQUAL(p.rules[0].label, "rule 1");
    int r = pol_explain(&p, POL_ACT_URL, "wss://example.com/admin/x", buf, sizeof buf);
    CU_ASSERT_EQUAL(r, POL_DENY);
    CU_ASSERT(strstr(buf, "request: action websocket.connect.url, resource "
                          "wss://example.com/admin/x\n") != NULL);
    CU_ASSERT(strstr(buf, "rule 1: allow websocket.connect *: no match (action differs)") != NULL);
    CU_ASSERT(strstr(buf, "policy.conf:3: allow websocket.connect.url wss://example.com/*: "
                          "matches") != NULL);
    CU_ASSERT(strstr(buf, "policy.conf:4: deny websocket.connect.url "
                          "wss://example.com/admin*: matches") != NULL);
    CU_ASSERT(strstr(buf, "decision: DENY: denied by policy.conf:4 (a matching deny rule wins") !=
              NULL);
    r = pol_explain(&p, POL_ACT_URL, "wss://other.com/", buf, sizeof buf);
    CU_ASSERT_EQUAL(r, POL_DENY);
    CU_ASSERT(strstr(buf, "decision: DENY: no rule allows it\n") != NULL);
    r = pol_explain(&p, POL_ACT_CONNECT, NULL, buf, sizeof buf);
    CU_ASSERT_EQUAL(r, POL_ALLOW);
    CU_ASSERT(strstr(buf, "decision: ALLOW: allowed by rule 1\n") != NULL);
    /* Truncation: always terminated, never overrun. */
    for (size_t cap = 0; cap < 64; cap++) {
        char *small = malloc(cap ? cap : 1);
        r = pol_explain(&p, POL_ACT_URL, "wss://example.com/admin", small, cap);
        CU_ASSERT_EQUAL(r, POL_DENY);
        if (cap) CU_ASSERT(strlen(small) < cap);
        free(small);
    }
    /* Long labels are cut to POL_LABEL_MAX bytes. */
    char label[400];
    memset(label, 'L', sizeof label - 1);
    label[sizeof label - 1] = '\0';
    CU_ASSERT_EQUAL(add(&p, "*", "*", POL_DENY, label), 0);
    CU_ASSERT_EQUAL(strlen(p.rules[3].label), POL_LABEL_MAX);
    struct pol_decision d;
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    CU_ASSERT(strlen(d.reason) < sizeof d.reason);
    pol_free(&p);
}

static void test_limits(void)
{
    struct pol_policy p = POL_POLICY_INIT;
    for (int i = 0; i < POL_MAX_RULES; i++)
        if (add(&p, POL_ACT_CONNECT, "*", i % 2 ? POL_ALLOW : POL_DENY, NULL) != 0) break;
    CU_ASSERT_EQUAL(p.n, POL_MAX_RULES);
    CU_ASSERT_EQUAL(add(&p, POL_ACT_CONNECT, "*", POL_ALLOW, NULL), POL_ETOOMANY);
    struct pol_decision d;
    CU_ASSERT_EQUAL(pol_eval(&p, POL_ACT_CONNECT, NULL, &d), POL_DENY);
    CU_ASSERT_EQUAL(d.index, 0);
    pol_free(&p);
    /* An over-long pattern is refused, not truncated. */
    char *big = malloc(BRK_URL_MAX + 32);
    strcpy(big, "wss://a.b/");
    memset(big + 10, 'x', BRK_URL_MAX);
    strcpy(big + 10 + BRK_URL_MAX, "*");
    CU_ASSERT_EQUAL(add(&p, POL_ACT_URL, big, POL_ALLOW, NULL), POL_EINVAL);
    free(big);
    pol_free(&p);
}

int suite_policy(void)
{
    CU_pSuite s = CU_add_suite("policy", NULL, NULL);
    if (!s || !CU_add_test(s, "no rule means deny", test_empty_denies) ||
        !CU_add_test(s, "--allow shortcut and host extension", test_allow_url_shortcut) ||
        !CU_add_test(s, "deny beats allow", test_deny_beats_allow) ||
        !CU_add_test(s, "websocket.connect needs *", test_connect_needs_star) ||
        !CU_add_test(s, "exact and prefix patterns", test_exact_and_prefix) ||
        !CU_add_test(s, "patterns are canonicalised", test_pattern_canonicalisation) ||
        !CU_add_test(s, "host wildcards", test_host_wildcard) ||
        !CU_add_test(s, "unsafe patterns refused", test_refused_patterns) ||
        !CU_add_test(s, "explanations and labels", test_explain_and_labels) ||
        !CU_add_test(s, "limits", test_limits))
        return CU_get_error();
    return 0;
}

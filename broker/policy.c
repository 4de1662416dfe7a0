/* Policy engine: compile allow/deny rules and evaluate requests against them.
 *
 * Layer: broker/, pure C: no I/O, no libwebsockets, no Lua; depends only on
 * broker/url.h. Matching semantics are documented in policy.h. Patterns are
 * compiled once (canonicalised with the same parser the broker uses for the
 * URL it dials), so evaluation is a few string comparisons per rule. */
#include "broker/policy.h"

#include "broker/url.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ACT_ANY, ACT_CONNECT, ACT_URL, ACT_UNKNOWN };
enum { KIND_ANY, KIND_EXACT, KIND_PREFIX };

static int fail(int code, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *err, size_t errcap, const char *fmt, ...)
{
    if (err && errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int action_id(const char *a)
{
    if (!a) return ACT_UNKNOWN;
    if (strcmp(a, "*") == 0) return ACT_ANY;
    if (strcmp(a, POL_ACT_CONNECT) == 0) return ACT_CONNECT;
    if (strcmp(a, POL_ACT_URL) == 0) return ACT_URL;
    return ACT_UNKNOWN;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static void rule_free(struct pol_rule *r)
{
    free(r->action);
    free(r->resource);
    free(r->label);
    free(r->suffix);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* Refuses a raw pattern path (pat[0..n), up to '?') that has a "." or ".."
 * segment, also written as %2e, including a last, partial one: dot removal
 * would change what such a prefix means. */
static int has_dot_segment(const char *pat, size_t n)
{
    size_t i = 0;
    while (i < n && pat[i] != '?') {
        if (pat[i++] != '/') continue;
        size_t dots = 0, other = 0;
        while (i < n && pat[i] != '/' && pat[i] != '?') {
            if (pat[i] == '.') {
                dots++;
                i++;
            } else if (pat[i] == '%' && i + 2 < n && pat[i + 1] == '2' &&
                       (pat[i + 2] == 'e' || pat[i + 2] == 'E')) {
                dots++;
                i += 3;
            } else {
                other++;
                i++;
            }
        }
        if (other == 0 && (dots == 1 || dots == 2)) return 1;
    }
    return 0;
}

/* Compiles a URL pattern into r (kind, text, host_wild, suffix, ...). The
 * display form is written to r->resource. */
static int compile_url_pattern(struct pol_rule *r, const char *pat, char *err, size_t errcap)
{
    char uerr[200];
    size_t n = strlen(pat);
    int prefix = 0, wild = 0;
    struct brk_url *u;

    if (strcmp(pat, "*") == 0) {
        r->kind = KIND_ANY;
        r->resource = dup_str("*");
        return r->resource ? 0 : POL_ENOMEM;
    }
    if (n > BRK_URL_MAX)
        return fail(POL_EINVAL, err, errcap, "URL pattern longer than %d bytes", BRK_URL_MAX);
    if (n > 0 && pat[n - 1] == '*') {
        prefix = 1;
        n--;
    }
    const char *sep = strstr(pat, "://");
    if (!sep || (size_t)(sep - pat) > n)
        return fail(POL_EINVAL, err, errcap,
                    "URL pattern must be \"*\" or start with ws:// or wss://");
    size_t a = (size_t)(sep - pat) + 3;
    if (a + 1 < n && pat[a] == '*' && pat[a + 1] == '.') wild = 1;
    for (size_t i = wild ? a + 1 : 0; i < n; i++)
        if (pat[i] == '*')
            return fail(POL_EINVAL, err, errcap,
                        "'*' is only allowed at the end of a URL pattern or as \"*.\" at the "
                        "start of the host");
    size_t e = a;
    while (e < n && pat[e] != '/' && pat[e] != '?')
        e++;
    if (prefix && e >= n)
        return fail(POL_EINVAL, err, errcap,
                    "a '*' prefix pattern must have '/' (or '?') after the host and port, e.g. "
                    "wss://example.com/*; \"host*\" would also match other hosts");

    /* Parse the pattern (without the trailing '*'; the wildcard label
     * replaced by a placeholder) with the URL parser itself. */
    char *tmp = malloc(n + 2);
    u = malloc(sizeof *u);
    if (!tmp || !u) {
        free(tmp);
        free(u);
        return POL_ENOMEM;
    }
    memcpy(tmp, pat, n);
    tmp[n] = '\0';
    if (wild) tmp[a] = 'x';
    int rc = brk_url_parse(tmp, n, u, uerr, sizeof uerr);
    free(tmp);
    if (rc < 0) {
        free(u);
        return fail(POL_EINVAL, err, errcap, "bad URL pattern: %s", uerr);
    }
    if (prefix && has_dot_segment(pat + e, n - e)) {
        free(u);
        return fail(POL_EINVAL, err, errcap,
                    "a '*' prefix pattern must not contain \".\" or \"..\" path segments");
    }
    if (wild && (u->host_is_ip || !strchr(u->host, '.'))) {
        free(u);
        return fail(POL_EINVAL, err, errcap, "a \"*.\" host wildcard needs a domain name");
    }
    r->kind = prefix ? KIND_PREFIX : KIND_EXACT;
    size_t cap = strlen(u->canonical) + 3;
    r->resource = malloc(cap);
    if (wild) {
        /* host_header is "x.domain[:port]": drop the placeholder label. */
        if (r->resource)
            snprintf(r->resource, cap, "%s://*%s%s%s", u->scheme, u->host_header + 1, u->target,
                     prefix ? "*" : "");
        r->host_wild = 1;
        r->secure = u->secure;
        r->port = u->port;
        r->suffix = dup_str(u->host + 1);
        r->text = dup_str(u->target);
    } else {
        if (r->resource) snprintf(r->resource, cap, "%s%s", u->canonical, prefix ? "*" : "");
        r->text = dup_str(u->canonical);
    }
    free(u);
    if (!r->resource || !r->text || (wild && !r->suffix)) return POL_ENOMEM;
    return 0;
}

int pol_add_rule(struct pol_policy *p, const char *action, const char *resource, int effect,
                 const char *label, char *err, size_t errcap)
{
    struct pol_rule r;
    int rc;

    if (err && errcap) err[0] = '\0';
    memset(&r, 0, sizeof r);
    if (!p) return fail(POL_EINVAL, err, errcap, "no policy");
    if (p->n >= POL_MAX_RULES)
        return fail(POL_ETOOMANY, err, errcap, "too many rules (at most %d)", POL_MAX_RULES);
    if (effect != POL_ALLOW && effect != POL_DENY)
        return fail(POL_EINVAL, err, errcap, "effect must be allow or deny");
    r.act = action_id(action);
    if (r.act == ACT_UNKNOWN)
        return fail(POL_EINVAL, err, errcap,
                    "unknown action (expected websocket.connect, websocket.connect.url or *)");
    r.effect = effect;
    if (!resource) resource = "*";
    if (r.act == ACT_CONNECT && strcmp(resource, "*") != 0)
        return fail(POL_EINVAL, err, errcap,
                    "websocket.connect has no resource; its rules must use \"*\"");
    rc = compile_url_pattern(&r, resource, err, errcap);
    if (rc < 0) {
        rule_free(&r);
        if (rc == POL_ENOMEM) return fail(rc, err, errcap, "out of memory");
        return rc;
    }
    r.action = dup_str(action);
    if (label) {
        size_t ln = strnlen(label, POL_LABEL_MAX);
        r.label = malloc(ln + 1);
        if (r.label) {
            memcpy(r.label, label, ln);
            r.label[ln] = '\0';
        }
    } else {
        r.label = malloc(32);
        if (r.label) snprintf(r.label, 32, "rule %zu", p->n + 1);
    }
    if (!r.action || !r.label) {
        rule_free(&r);
        return fail(POL_ENOMEM, err, errcap, "out of memory");
    }
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 8;
        struct pol_rule *nr = realloc(p->rules, ncap * sizeof *nr);
        if (!nr) {
            rule_free(&r);
            return fail(POL_ENOMEM, err, errcap, "out of memory");
        }
        p->rules = nr;
        p->cap = ncap;
    }
    p->rules[p->n++] = r;
    return 0;
}

int pol_allow_url(struct pol_policy *p, const char *pattern, const char *label, char *err,
                  size_t errcap)
{
    if (!p) return fail(POL_EINVAL, err, errcap, "no policy");
    size_t before = p->n;
    int rc = pol_add_rule(p, POL_ACT_CONNECT, "*", POL_ALLOW, label, err, errcap);
    if (rc == 0) rc = pol_add_rule(p, POL_ACT_URL, pattern, POL_ALLOW, label, err, errcap);
    if (rc < 0)
        while (p->n > before)
            rule_free(&p->rules[--p->n]);
    return rc;
}

void pol_free(struct pol_policy *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++)
        rule_free(&p->rules[i]);
    free(p->rules);
    p->rules = NULL;
    p->n = p->cap = 0;
}

/* ---- Evaluation ---------------------------------------------------------- */

/* Bounded text sink for explanations (NULL buffer: discard). */
struct sink {
    char *buf;  /* destination, not owned; NULL to discard */
    size_t cap; /* bytes available incl. NUL */
    size_t len; /* bytes written so far (<= cap - 1) */
};

static void say(struct sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct sink *s, const char *fmt, ...)
{
    if (!s->buf || s->len + 1 >= s->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (w > 0) s->len = (size_t)w >= s->cap - s->len ? s->cap - 1 : s->len + (size_t)w;
}

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t m = strlen(suf);
    return n >= m && memcmp(s + n - m, suf, m) == 0;
}

/* Does rule r's resource pattern match the parsed, canonical URL u?
 * why gets a short reason for explanations. */
static int url_matches(const struct pol_rule *r, const struct brk_url *u, const char **why)
{
    switch (r->kind) {
    case KIND_ANY:
        *why = "pattern * matches any URL";
        return 1;
    case KIND_EXACT:
        if (!r->host_wild) {
            *why = strcmp(u->canonical, r->text) == 0 ? "URL equals the pattern"
                                                      : "URL differs from the pattern";
            return strcmp(u->canonical, r->text) == 0;
        }
        break;
    case KIND_PREFIX:
        if (!r->host_wild) {
            int m = strncmp(u->canonical, r->text, strlen(r->text)) == 0;
            *why =
                m ? "URL starts with the pattern's prefix" : "URL does not start with the prefix";
            return m;
        }
        break;
    default:
        *why = "unknown pattern kind";
        return 0;
    }
    /* Host wildcard. */
    size_t hl = strlen(u->host);
    if (u->host_is_ip || u->secure != r->secure || u->port != r->port) {
        *why = "scheme, port or host type differs";
        return 0;
    }
    if (hl <= strlen(r->suffix) || !ends_with(u->host, hl, r->suffix)) {
        *why = "host is not a subdomain of the wildcard's domain";
        return 0;
    }
    int m = r->kind == KIND_EXACT ? strcmp(u->target, r->text) == 0
                                  : strncmp(u->target, r->text, strlen(r->text)) == 0;
    *why = m ? "host is a subdomain and the path matches" : "host matches but the path does not";
    return m;
}

static const char *effect_name(int e)
{
    return e == POL_ALLOW ? "allow" : "deny";
}

static int evaluate(const struct pol_policy *p, const char *action, const char *resource,
                    struct pol_decision *d, struct sink *out)
{
    struct pol_decision local;
    struct brk_url *u = NULL;
    long allow = -1, deny = -1;
    int act;

    if (!d) d = &local;
    memset(d, 0, sizeof *d);
    d->effect = POL_DENY;
    d->index = -1;
    act = action_id(action);
    say(out, "request: action %s, resource %s\n", action ? action : "(none)",
        act == ACT_URL ? (resource ? resource : "(none)") : "-");
    if (!p || act == ACT_UNKNOWN || act == ACT_ANY) {
        snprintf(d->reason, sizeof d->reason, "unknown action");
        goto done;
    }
    if (act == ACT_URL) {
        char uerr[200];
        u = malloc(sizeof *u);
        if (!u) {
            snprintf(d->reason, sizeof d->reason, "out of memory");
            goto done;
        }
        if (!resource || brk_url_parse(resource, strlen(resource), u, uerr, sizeof uerr) < 0) {
            snprintf(d->reason, sizeof d->reason, "resource is not a valid URL: %s",
                     resource ? uerr : "none given");
            goto done;
        }
        if (strcmp(u->canonical, resource) != 0) {
            snprintf(d->reason, sizeof d->reason, "resource is not a canonical URL");
            goto done;
        }
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct pol_rule *r = &p->rules[i];
        const char *why;
        int m;
        if (r->act != ACT_ANY && r->act != act) {
            m = 0;
            why = "action differs";
        } else if (act == ACT_CONNECT) {
            m = r->kind == KIND_ANY;
            why = m ? "resource * matches" : "websocket.connect has no resource; needs *";
        } else {
            m = url_matches(r, u, &why);
        }
        say(out, "  %s: %s %s %s: %s (%s)\n", r->label, effect_name(r->effect), r->action,
            r->resource, m ? "matches" : "no match", why);
        if (!m) continue;
        if (r->effect == POL_DENY && deny < 0) deny = (long)i;
        if (r->effect == POL_ALLOW && allow < 0) allow = (long)i;
    }
    if (deny >= 0) {
        d->index = deny;
        d->rule = &p->rules[deny];
        snprintf(d->reason, sizeof d->reason, "denied by %s", d->rule->label);
    } else if (allow >= 0) {
        d->effect = POL_ALLOW;
        d->index = allow;
        d->rule = &p->rules[allow];
        snprintf(d->reason, sizeof d->reason, "allowed by %s", d->rule->label);
    } else {
        snprintf(d->reason, sizeof d->reason, "no rule allows it");
    }
done:
    free(u);
    say(out, "decision: %s: %s%s\n", d->effect == POL_ALLOW ? "ALLOW" : "DENY", d->reason,
        deny >= 0 && allow >= 0 ? " (a matching deny rule wins over allow rules)" : "");
    return d->effect;
}

int pol_eval(const struct pol_policy *p, const char *action, const char *resource,
             struct pol_decision *d)
{
    struct sink none = {NULL, 0, 0};
    return evaluate(p, action, resource, d, &none);
}

int pol_explain(const struct pol_policy *p, const char *action, const char *resource, char *buf,
                size_t cap)
{
    struct sink s = {buf, cap, 0};
    if (buf && cap) buf[0] = '\0';
    return evaluate(p, action, resource, NULL, &s);
}

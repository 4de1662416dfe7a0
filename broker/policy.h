/* Policy engine: allow/deny rules for the script-facing actions.
 *
 * Layer: broker/, pure C. No I/O, no libwebsockets, no Lua. Uses broker/url.h
 * to canonicalise URL patterns and resources. Allocates only in
 * pol_add_rule() (owned by the policy, freed by pol_free()).
 *
 * Actions: "websocket.connect" (no resource; only a rule whose resource is
 * "*" matches it), "websocket.connect.url" (resource: a canonical URL, see
 * url.h), and "*" in a rule meaning both. Unknown actions are refused when a
 * rule is added and denied when evaluated.
 *
 * Decision: every rule is checked; any matching deny rule wins (the first one
 * is reported); otherwise the first matching allow rule allows; no matching
 * allow rule means deny ("no rule allows it").
 *
 * URL resource patterns (canonicalised when added, so "WSS://Example.COM:443/x"
 * equals "wss://example.com/x"):
 * - "*"                       any URL.
 * - "wss://host[:port]/path"  exact: the canonical URL must be equal
 *                             (query included: "/x" does not match "/x?y").
 * - "wss://host[:port]/pre*"  prefix: the canonical URL starts with the
 *                             canonical prefix. The authority must be closed
 *                             by '/' or '?' before the '*': "wss://example.com*"
 *                             and "wss://example.com:*" are refused, so a
 *                             prefix can never extend a host name
 *                             (example.com.evil.net) or a port.
 *                             "/api*" matches "/api", "/apix", "/api/v1";
 *                             write "/api/" "*" for the subtree only.
 * - "wss://" "*.example.com[:port]/path" (or ending in a prefix '*'):
 *                             host wildcard: the
 *                             host must END in ".example.com" with at least
 *                             one more label (sub.example.com,
 *                             a.b.example.com; NOT example.com itself, not
 *                             IP literals); scheme and port (default or
 *                             explicit) must be equal; the target is matched
 *                             exactly or by prefix as above.
 * '*' anywhere else in a pattern is refused (write %2A for a literal star).
 * Prefix patterns whose path has a "." or ".." segment are refused (dot
 * removal would change what the prefix means). */
#ifndef POL_POLICY_H
#define POL_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define POL_MAX_RULES   4096 /* rules per policy (bounded memory) */
#define POL_LABEL_MAX   128  /* bytes kept of a rule label */
#define POL_REASON_MAX  320  /* bytes of pol_decision.reason incl. NUL */
#define POL_ACT_CONNECT "websocket.connect"
#define POL_ACT_URL     "websocket.connect.url"

/* Effects; also pol_eval()'s return value. */
enum pol_effect {
    POL_DENY = 0,
    POL_ALLOW = 1,
};

/* Error codes of pol_add_rule(). */
enum pol_err {
    POL_EINVAL = -1,   /* bad action, effect or pattern (reason in err) */
    POL_ENOMEM = -2,   /* allocation failed */
    POL_ETOOMANY = -3, /* POL_MAX_RULES reached */
};

/* One compiled rule. All strings are owned by the rule (freed by pol_free). */
struct pol_rule {
    char *action;   /* owned: "websocket.connect", "websocket.connect.url" or "*" */
    char *resource; /* owned: canonical pattern as written back in explanations */
    char *label;    /* owned: caller's label (e.g. "policy.conf:12"), or "rule N" */
    int effect;     /* POL_ALLOW or POL_DENY */
    int act;        /* compiled action (internal enum in policy.c) */
    int kind;       /* compiled resource kind: any, exact, prefix (internal) */
    int host_wild;  /* 1 for "scheme://" "*.domain/..." patterns */
    int secure;     /* host_wild only: 1 for wss */
    uint16_t port;  /* host_wild only: port to match */
    char *suffix;   /* owned, host_wild only: ".domain" the host must end with */
    char *text;     /* owned: string compared with the canonical URL (exact or
                       prefix); for host_wild the request target part only */
};

/* A policy: an ordered array of rules. Zero-initialise (POL_POLICY_INIT) before use. */
struct pol_policy {
    struct pol_rule *rules; /* owned array of n rules (capacity cap) */
    size_t n;               /* rules in use */
    size_t cap;             /* allocated entries */
};
#define POL_POLICY_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Outcome of one evaluation. rule/label point into the policy and stay valid
 * until it is changed or freed. */
struct pol_decision {
    int effect;                  /* POL_ALLOW or POL_DENY */
    const struct pol_rule *rule; /* deciding rule, NULL when nothing matched or request invalid */
    long index;                  /* index of rule in the policy, -1 when none */
    char reason[POL_REASON_MAX]; /* one-line human-readable reason */
};

/* Validates and appends a rule. action: one of the action names or "*";
 * resource: a pattern as above ("*" or NULL for websocket.connect, which
 * accepts nothing else); effect POL_ALLOW/POL_DENY; label may be NULL.
 * Returns 0 or a negative pol_err with a reason in err. */
int pol_add_rule(struct pol_policy *p, const char *action, const char *resource, int effect,
                 const char *label, char *err, size_t errcap);

/* The --allow URL-PATTERN shortcut: adds "allow websocket.connect *" and
 * "allow websocket.connect.url PATTERN" (both labelled label). On error
 * nothing is added. */
int pol_allow_url(struct pol_policy *p, const char *pattern, const char *label, char *err,
                  size_t errcap);

/* Evaluates action on resource (the canonical URL for websocket.connect.url;
 * ignored for websocket.connect). A URL resource that does not parse, or is
 * not already canonical, is denied. Fills *d (if not NULL); returns
 * POL_ALLOW or POL_DENY. Pure: p is not modified. */
int pol_eval(const struct pol_policy *p, const char *action, const char *resource,
             struct pol_decision *d);

/* Like pol_eval, and writes a multi-line explanation to buf (cap bytes,
 * always NUL-terminated when cap > 0, truncated if needed): the request, one
 * line per rule saying whether and why it matched, and the decision. */
int pol_explain(const struct pol_policy *p, const char *action, const char *resource, char *buf,
                size_t cap);

/* Frees every rule and resets *p to empty (safe on an empty policy). */
void pol_free(struct pol_policy *p);

#endif

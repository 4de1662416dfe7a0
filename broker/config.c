/* Parser and validator of the operator's configuration file (config.h).
 *
 * Layer: broker/, plain C. Reads hostile-enough text (an operator's typo must
 * never crash the service): every line is bounded, every value is checked
 * against its range, and every error is collected with its line number before
 * anything is returned. Never runs Lua. */
#include "broker/config.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/addr.h"

#define MAX_ERRORS  50         /* errors reported before giving up */
#define MAX_LINE    8192       /* bytes of one line */
#define MAX_FILE    (4u << 20) /* bytes of a config file */
#define MAX_TENANTS 1024
#define MAX_SCRIPTS 4096

void brk_quota_defaults(struct brk_quota *q)
{
    *q = (struct brk_quota){
        .max_workers = 8,
        .max_connections = 64,
        .connects_per_sec = 10,
        .bytes_in_per_sec = 8u << 20,
        .bytes_out_per_sec = 8u << 20,
        .messages_in_per_sec = 2000,
        .messages_out_per_sec = 2000,
        .max_read_limit = 16u << 20,
        .max_channel_capacity = 1000,
        .max_compression = 2,
        .memory = 64u << 20,
        .cpu_ms = 0,
        .wall_ms = 0,
        .log_lines_per_sec = 50,
    };
}

int brk_cfg_compression_rank(int proto_mode)
{
    return proto_mode == 0 ? 0 : proto_mode == 2 ? 1 : 2;
}

const char *brk_cfg_compression_name(int rank)
{
    return rank <= 0 ? "disabled" : rank == 1 ? "no_context" : "context_takeover";
}

/* ---- values ---- */

int brk_cfg_parse_size(const char *s, uint64_t *n)
{
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024 * 1024, end++;
    if (*end || (mul > 1 && v > UINT64_MAX / mul)) return -1;
    *n = v * mul;
    return 0;
}

int brk_cfg_parse_duration(const char *s, uint64_t *ms)
{
    if (!isdigit((unsigned char)*s)) return -1;
    uint64_t total = 0;
    const char *p = s;
    int units = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p)) return -1;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || v > 1000000000ull) return -1;
        uint64_t mul;
        if (!*end && !units) { /* a bare number: milliseconds */
            total = v;
            p = end;
            break;
        }
        if (!strncmp(end, "ms", 2))
            mul = 1, end += 2;
        else if (*end == 's')
            mul = 1000, end++;
        else if (*end == 'm')
            mul = 60000, end++;
        else if (*end == 'h')
            mul = 3600000, end++;
        else
            return -1;
        total += v * mul;
        units++;
        p = end;
    }
    if (total > 365ull * 24 * 3600000) return -1;
    *ms = total;
    return 0;
}

/* ---- error collection ---- */

struct parser {
    const char *file; /* name used in messages */
    char *dir;        /* owned: directory for relative paths */
    unsigned flags;
    int line; /* current line */
    int n_err;
    char *err; /* owned: collected messages */
    size_t err_len, err_cap;
    struct brk_cfgfile *c;
    int section;              /* S_* */
    struct brk_cfg_tenant *t; /* current tenant section */
    struct brk_cfg_script *s; /* current script section */
    uint64_t seen;            /* keys set in the current section (bits by key index) */
    int broker_line;          /* line of [broker], 0 if none yet */
};

enum { S_NONE, S_BROKER, S_TENANT, S_SCRIPT, S_SKIP };

static void perr_at(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr_at(struct parser *p, int line, const char *fmt, ...)
{
    p->n_err++;
    if (p->n_err > MAX_ERRORS) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char head[PATH_MAX + 32];
    if (p->n_err == MAX_ERRORS) snprintf(msg, sizeof msg, "too many errors; stopping here");
    int hl = snprintf(head, sizeof head, "%s:%d: ", p->file, line);
    size_t need = (size_t)hl + strlen(msg) + 2;
    if (p->err_len + need > p->err_cap) {
        size_t cap = p->err_cap ? p->err_cap * 2 : 1024;
        while (cap < p->err_len + need)
            cap *= 2;
        char *n = realloc(p->err, cap);
        if (!n) return;
        p->err = n;
        p->err_cap = cap;
    }
    p->err_len += (size_t)sprintf(p->err + p->err_len, "%s%s\n", head, msg);
}

#define perr(p, ...) perr_at((p), (p)->line, __VA_ARGS__)

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > BRK_CFG_NAME_MAX || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) return 0;
    return 1;
}

/* Makes a path absolute relative to the config file's directory. */
static char *abs_path(struct parser *p, const char *v)
{
    if (v[0] == '/') return strdup(v);
    size_t n = strlen(p->dir) + strlen(v) + 2;
    char *r = malloc(n);
    if (r) snprintf(r, n, "%s/%s", p->dir, v);
    return r;
}

/* ---- keys ---- */

enum vtype { V_COUNT, V_SIZE, V_DURATION };

struct qkey {
    const char *name;
    enum vtype type;
    size_t off; /* offset in struct brk_quota */
    int wide;   /* 1: uint64_t field, 0: uint32_t */
    uint64_t min, max;
    const char *unit; /* for messages */
};

#define QF(f) offsetof(struct brk_quota, f)
static const struct qkey qkeys[] = {
    {"max_workers", V_COUNT, QF(max_workers), 0, 1, 10000, ""},
    {"max_connections", V_COUNT, QF(max_connections), 0, 1, 100000, ""},
    {"connects_per_sec", V_COUNT, QF(connects_per_sec), 0, 1, 100000, ""},
    {"bytes_in_per_sec", V_SIZE, QF(bytes_in_per_sec), 1, 0, 1ull << 40, " bytes"},
    {"bytes_out_per_sec", V_SIZE, QF(bytes_out_per_sec), 1, 0, 1ull << 40, " bytes"},
    {"messages_in_per_sec", V_COUNT, QF(messages_in_per_sec), 0, 0, 10000000, ""},
    {"messages_out_per_sec", V_COUNT, QF(messages_out_per_sec), 0, 0, 10000000, ""},
    {"max_read_limit", V_SIZE, QF(max_read_limit), 1, 1, 128u << 20, " bytes"},
    {"max_channel_capacity", V_COUNT, QF(max_channel_capacity), 0, 1, 10000, ""},
    {"memory", V_SIZE, QF(memory), 1, 1u << 20, 16ull << 30, " bytes"},
    {"cpu", V_DURATION, QF(cpu_ms), 1, 0, 365ull * 24 * 3600000, " ms"},
    {"wall", V_DURATION, QF(wall_ms), 1, 0, 365ull * 24 * 3600000, " ms"},
    {"log_lines_per_sec", V_COUNT, QF(log_lines_per_sec), 0, 0, 1000000, ""},
};
#define N_QKEYS (sizeof qkeys / sizeof qkeys[0])

/* Key indices for duplicate detection beyond the quota keys. */
enum {
    K_ALLOW_ADDRESSES = N_QKEYS,
    K_MAX_COMPRESSION,
    K_PATH,
    K_RESTART,
    K_RESTART_DELAY,
    K_RESTART_MAX_DELAY,
    K_START_LIMIT,
    K_START_WINDOW,
    K_AUTOSTART,
    K_ADMIN_SOCKET,
    K_AUDIT_LOG,
    K_WORKER,
    K_CA_FILE,
    K_DRAIN_TIMEOUT,
    K_RING_BYTES,
    K_READY_TIMEOUT,
};

/* Returns 1 the first time a key is set in a section, 0 (after an error) later. */
static int first_time(struct parser *p, int k, const char *key)
{
    if (p->seen & (1ull << k)) {
        perr(p, "'%s' is set twice in this section", key);
        return 0;
    }
    p->seen |= 1ull << k;
    return 1;
}

static int get_number(struct parser *p, enum vtype type, const char *key, const char *v,
                      uint64_t min, uint64_t max, const char *unit, uint64_t *out)
{
    uint64_t n;
    int rc = type == V_DURATION ? brk_cfg_parse_duration(v, &n) : brk_cfg_parse_size(v, &n);
    if (type == V_COUNT && rc == 0 && !isdigit((unsigned char)v[strlen(v) - 1]))
        rc = brk_cfg_parse_size(v, &n); /* counts may use K/M too */
    if (rc != 0) {
        perr(p, "%s: '%s' is not a %s", key, v,
             type == V_DURATION ? "duration (like 500ms, 5s, 1m30s)"
             : type == V_SIZE   ? "size (like 4096, 64K, 16M)"
                                : "number");
        return -1;
    }
    if (n < min || n > max) {
        perr(p, "%s: %s is out of range (%llu..%llu%s)", key, v, (unsigned long long)min,
             (unsigned long long)max, unit);
        return -1;
    }
    *out = n;
    return 0;
}

static void set_path(struct parser *p, int k, const char *key, const char *v, char **dst,
                     int must_exist)
{
    if (!first_time(p, k, key)) return;
    if (!*v) {
        perr(p, "%s: empty path", key);
        return;
    }
    char *a = abs_path(p, v);
    if (!a) {
        perr(p, "out of memory");
        return;
    }
    if (must_exist && !(p->flags & BRK_CFG_NO_FILE_CHECKS) && access(a, R_OK) != 0) {
        perr(p, "%s: %s: %s", key, a, strerror(errno));
        free(a);
        return;
    }
    free(*dst);
    *dst = a;
}

static void broker_key(struct parser *p, const char *key, const char *v)
{
    struct brk_cfgfile *c = p->c;
    uint64_t n;
    if (!strcmp(key, "admin_socket")) {
        set_path(p, K_ADMIN_SOCKET, key, v, &c->admin_socket, 0);
    } else if (!strcmp(key, "audit_log")) {
        set_path(p, K_AUDIT_LOG, key, v, &c->audit_log, 0);
    } else if (!strcmp(key, "worker")) {
        set_path(p, K_WORKER, key, v, &c->worker_path, 0);
        if (c->worker_path && !(p->flags & BRK_CFG_NO_FILE_CHECKS) &&
            access(c->worker_path, X_OK) != 0)
            perr(p, "worker: %s: %s", c->worker_path, strerror(errno));
    } else if (!strcmp(key, "ca_file")) {
        set_path(p, K_CA_FILE, key, v, &c->ca_file, 1);
    } else if (!strcmp(key, "drain_timeout")) {
        if (first_time(p, K_DRAIN_TIMEOUT, key) &&
            get_number(p, V_DURATION, key, v, 100, 3600000, " ms", &n) == 0)
            c->drain_timeout_ms = (uint32_t)n;
    } else if (!strcmp(key, "ready_timeout")) {
        if (first_time(p, K_READY_TIMEOUT, key) &&
            get_number(p, V_DURATION, key, v, 100, 600000, " ms", &n) == 0)
            c->ready_timeout_ms = (uint32_t)n;
    } else if (!strcmp(key, "ring_bytes")) {
        if (first_time(p, K_RING_BYTES, key) &&
            get_number(p, V_SIZE, key, v, 64u << 10, 256u << 20, " bytes", &n) == 0) {
            if (n & (n - 1))
                perr(p, "ring_bytes: %s is not a power of two", v);
            else
                c->ring_bytes = n;
        }
    } else {
        perr(p,
             "unknown key '%s' in [broker] (known: admin_socket, audit_log, worker, "
             "ca_file, drain_timeout, ready_timeout, ring_bytes)",
             key);
    }
}

/* rule = EFFECT ACTIONS RESOURCE [RESOURCE...] */
static void rule_key(struct parser *p, char *v)
{
    char *save = NULL;
    char *effect = strtok_r(v, " \t", &save);
    char *actions = effect ? strtok_r(NULL, " \t", &save) : NULL;
    char *res = actions ? strtok_r(NULL, " \t", &save) : NULL;
    if (!res) {
        perr(p, "rule: expected 'allow|deny ACTIONS RESOURCE...' (for example "
                "'rule = allow websocket.connect.url wss://example.com/*')");
        return;
    }
    int eff;
    if (!strcmp(effect, "allow"))
        eff = POL_ALLOW;
    else if (!strcmp(effect, "deny"))
        eff = POL_DENY;
    else {
        perr(p, "rule: effect '%s' is neither allow nor deny", effect);
        return;
    }
    char label[PATH_MAX + 16];
    snprintf(label, sizeof label, "%s:%d", p->file, p->line);
    for (; res; res = strtok_r(NULL, " \t", &save)) {
        char acts[512];
        snprintf(acts, sizeof acts, "%s", actions);
        char *s2 = NULL;
        for (char *a = strtok_r(acts, ",", &s2); a; a = strtok_r(NULL, ",", &s2)) {
            char err[512];
            if (strcmp(a, POL_ACT_CONNECT) && strcmp(a, POL_ACT_URL) && strcmp(a, "*")) {
                perr(p, "rule: unknown action '%s' (known: %s, %s, *)", a, POL_ACT_CONNECT,
                     POL_ACT_URL);
                return;
            }
            int rc = pol_add_rule(&p->t->policy, a, res, eff, label, err, sizeof err);
            if (rc != 0) {
                perr(p, "rule: %s %s: %s", a, res, rc == POL_ENOMEM ? "out of memory" : err);
                return;
            }
            p->c->n_rules++;
        }
    }
}

static void tenant_key(struct parser *p, const char *key, char *v)
{
    struct brk_cfg_tenant *t = p->t;
    for (size_t i = 0; i < N_QKEYS; i++) {
        const struct qkey *q = &qkeys[i];
        if (strcmp(key, q->name)) continue;
        uint64_t n;
        if (!first_time(p, (int)i, key) ||
            get_number(p, q->type, key, v, q->min, q->max, q->unit, &n) != 0)
            return;
        char *f = (char *)&t->quota + q->off;
        if (q->wide)
            memcpy(f, &n, sizeof n);
        else {
            uint32_t n32 = (uint32_t)n;
            memcpy(f, &n32, sizeof n32);
        }
        return;
    }
    if (!strcmp(key, "rule")) {
        rule_key(p, v);
    } else if (!strcmp(key, "allow_addresses")) {
        char err[256];
        unsigned mask;
        if (!first_time(p, K_ALLOW_ADDRESSES, key)) return;
        if (brk_addr_parse_mask(v, &mask, err, sizeof err) != 0)
            perr(p, "allow_addresses: %s", err);
        else
            t->addr_mask = mask;
    } else if (!strcmp(key, "max_compression")) {
        if (!first_time(p, K_MAX_COMPRESSION, key)) return;
        if (!strcmp(v, "disabled"))
            t->quota.max_compression = 0;
        else if (!strcmp(v, "no_context"))
            t->quota.max_compression = 1;
        else if (!strcmp(v, "context_takeover") || !strcmp(v, "any"))
            t->quota.max_compression = 2;
        else
            perr(p,
                 "max_compression: '%s' is not one of disabled, no_context, "
                 "context_takeover",
                 v);
    } else {
        perr(p, "unknown key '%s' in a [tenant] section (see broker/OPERATORS.md)", key);
    }
}

static void script_key(struct parser *p, const char *key, const char *v)
{
    struct brk_cfg_script *s = p->s;
    uint64_t n;
    if (!strcmp(key, "path")) {
        set_path(p, K_PATH, key, v, &s->path, 0);
        struct stat st;
        if (s->path && !(p->flags & BRK_CFG_NO_FILE_CHECKS)) {
            if (stat(s->path, &st) != 0 || access(s->path, R_OK) != 0)
                perr(p, "path: %s: %s", s->path, strerror(errno));
            else if (!S_ISREG(st.st_mode))
                perr(p, "path: %s: not a regular file", s->path);
            else if (st.st_size > (64 << 20))
                perr(p, "path: %s: larger than 64 MiB", s->path);
        }
    } else if (!strcmp(key, "restart")) {
        if (!first_time(p, K_RESTART, key)) return;
        if (!strcmp(v, "never") || !strcmp(v, "no"))
            s->restart = BRK_RESTART_NEVER;
        else if (!strcmp(v, "on-failure"))
            s->restart = BRK_RESTART_ON_FAILURE;
        else if (!strcmp(v, "always"))
            s->restart = BRK_RESTART_ALWAYS;
        else
            perr(p, "restart: '%s' is not one of never, on-failure, always", v);
    } else if (!strcmp(key, "restart_delay")) {
        if (first_time(p, K_RESTART_DELAY, key) &&
            get_number(p, V_DURATION, key, v, 10, 3600000, " ms", &n) == 0)
            s->restart_delay_ms = (uint32_t)n;
    } else if (!strcmp(key, "restart_max_delay")) {
        if (first_time(p, K_RESTART_MAX_DELAY, key) &&
            get_number(p, V_DURATION, key, v, 10, 24 * 3600000, " ms", &n) == 0)
            s->restart_max_delay_ms = (uint32_t)n;
    } else if (!strcmp(key, "start_limit")) {
        if (first_time(p, K_START_LIMIT, key) &&
            get_number(p, V_COUNT, key, v, 1, 100000, "", &n) == 0)
            s->start_limit = (uint32_t)n;
    } else if (!strcmp(key, "start_window")) {
        if (first_time(p, K_START_WINDOW, key) &&
            get_number(p, V_DURATION, key, v, 100, 24 * 3600000, " ms", &n) == 0)
            s->start_window_ms = (uint32_t)n;
    } else if (!strcmp(key, "autostart")) {
        if (!first_time(p, K_AUTOSTART, key)) return;
        if (!strcmp(v, "yes") || !strcmp(v, "true"))
            s->autostart = 1;
        else if (!strcmp(v, "no") || !strcmp(v, "false"))
            s->autostart = 0;
        else
            perr(p, "autostart: '%s' is not yes or no", v);
    } else {
        perr(p,
             "unknown key '%s' in a [script] section (known: path, restart, restart_delay, "
             "restart_max_delay, start_limit, start_window, autostart)",
             key);
    }
}

/* ---- sections ---- */

static void *grow(void *arr, size_t n, size_t size)
{
    /* Arrays grow one element at a time in powers of two. */
    if (n & (n - 1)) return arr;
    size_t cap = n ? n * 2 : 4;
    return realloc(arr, cap * size);
}

static void section(struct parser *p, char *h)
{
    p->seen = 0;
    p->t = NULL;
    p->s = NULL;
    p->section = S_SKIP; /* until proven good: keys of a bad section are ignored */
    char *sp = strpbrk(h, " \t");
    char *arg = NULL;
    if (sp) {
        *sp = 0;
        arg = sp + 1;
        while (*arg == ' ' || *arg == '\t')
            arg++;
        char *e = arg + strlen(arg);
        while (e > arg && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        if (!*arg) arg = NULL;
    }
    struct brk_cfgfile *c = p->c;
    if (!strcmp(h, "broker")) {
        if (arg) {
            perr(p, "[broker] takes no name");
            return;
        }
        if (p->broker_line) {
            perr(p, "[broker] appears twice (first at line %d)", p->broker_line);
            return;
        }
        p->broker_line = p->line;
        p->section = S_BROKER;
    } else if (!strcmp(h, "tenant")) {
        if (!arg || !valid_name(arg)) {
            perr(p,
                 "[tenant NAME]: the name must be 1..%d of A-Z a-z 0-9 _ . - "
                 "(not starting with . or -)",
                 BRK_CFG_NAME_MAX);
            return;
        }
        for (size_t i = 0; i < c->n_tenants; i++)
            if (!strcmp(c->tenants[i].name, arg)) {
                perr(p, "tenant '%s' is defined twice (first at line %d)", arg, c->tenants[i].line);
                return;
            }
        if (c->n_tenants >= MAX_TENANTS) {
            perr(p, "more than %d tenants", MAX_TENANTS);
            return;
        }
        void *n = grow(c->tenants, c->n_tenants, sizeof *c->tenants);
        if (!n) {
            perr(p, "out of memory");
            return;
        }
        c->tenants = n;
        struct brk_cfg_tenant *t = &c->tenants[c->n_tenants];
        memset(t, 0, sizeof *t);
        t->name = strdup(arg);
        t->line = p->line;
        t->addr_mask = BRK_ADDR_DEFAULT_MASK;
        brk_quota_defaults(&t->quota);
        c->n_tenants++;
        p->t = t;
        p->section = S_TENANT;
    } else if (!strcmp(h, "script")) {
        char *slash = arg ? strchr(arg, '/') : NULL;
        if (slash) *slash = 0;
        if (!slash || !valid_name(arg) || !valid_name(slash + 1)) {
            perr(p, "[script TENANT/NAME]: both names must be 1..%d of A-Z a-z 0-9 _ . -",
                 BRK_CFG_NAME_MAX);
            return;
        }
        for (size_t i = 0; i < c->n_scripts; i++)
            if (!strcmp(c->scripts[i].tenant_name, arg) && !strcmp(c->scripts[i].name, slash + 1)) {
                perr(p, "script '%s/%s' is defined twice (first at line %d)", arg, slash + 1,
                     c->scripts[i].line);
                return;
            }
        if (c->n_scripts >= MAX_SCRIPTS) {
            perr(p, "more than %d scripts", MAX_SCRIPTS);
            return;
        }
        void *n = grow(c->scripts, c->n_scripts, sizeof *c->scripts);
        if (!n) {
            perr(p, "out of memory");
            return;
        }
        c->scripts = n;
        struct brk_cfg_script *s = &c->scripts[c->n_scripts];
        *s = (struct brk_cfg_script){.name = strdup(slash + 1),
                                     .tenant_name = strdup(arg),
                                     .restart = BRK_RESTART_ON_FAILURE,
                                     .restart_delay_ms = 1000,
                                     .restart_max_delay_ms = 60000,
                                     .start_limit = 5,
                                     .start_window_ms = 60000,
                                     .autostart = 1,
                                     .line = p->line};
        c->n_scripts++;
        p->s = s;
        p->section = S_SCRIPT;
    } else {
        perr(p, "unknown section [%s] (known: [broker], [tenant NAME], [script TENANT/NAME])", h);
    }
}

static void parse_line(struct parser *p, char *line)
{
    /* '#' starts a comment at the start of a line or after blank space. */
    for (char *q = line; *q; q++)
        if (*q == '#' && (q == line || q[-1] == ' ' || q[-1] == '\t')) {
            *q = 0;
            break;
        }
    while (*line == ' ' || *line == '\t')
        line++;
    char *e = line + strlen(line);
    while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = 0;
    if (!*line) return;
    for (char *q = line; *q; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t') {
            perr(p, "control character in line");
            return;
        }
    if (*line == '[') {
        if (e[-1] != ']') {
            perr(p, "section header without a closing ']'");
            p->section = S_SKIP;
            return;
        }
        e[-1] = 0;
        section(p, line + 1);
        return;
    }
    char *eq = strchr(line, '=');
    if (!eq) {
        perr(p, "expected 'key = value' or a [section] header");
        return;
    }
    char *key = line, *v = eq + 1;
    char *ke = eq;
    while (ke > key && (ke[-1] == ' ' || ke[-1] == '\t'))
        ke--;
    *ke = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!*key) {
        perr(p, "missing key before '='");
        return;
    }
    if (!*v) {
        perr(p, "%s: missing value", key);
        return;
    }
    switch (p->section) {
    case S_NONE:
        perr(p,
             "'%s' outside any section (start with [broker], [tenant NAME] or "
             "[script TENANT/NAME])",
             key);
        return;
    case S_SKIP:
        return;
    case S_BROKER:
        broker_key(p, key, v);
        return;
    case S_TENANT:
        tenant_key(p, key, v);
        return;
    case S_SCRIPT:
        script_key(p, key, v);
        return;
    }
}

/* Checks that need the whole file. */
static void finish(struct parser *p)
{
    struct brk_cfgfile *c = p->c;
    for (size_t i = 0; i < c->n_scripts; i++) {
        struct brk_cfg_script *s = &c->scripts[i];
        s->tenant = brk_cfg_tenant(c, s->tenant_name);
        if (!s->tenant)
            perr_at(p, s->line, "script '%s/%s': no [tenant %s] section", s->tenant_name, s->name,
                    s->tenant_name);
        if (!s->path)
            perr_at(p, s->line, "script '%s/%s': 'path' is missing", s->tenant_name, s->name);
        if (s->restart_max_delay_ms < s->restart_delay_ms)
            perr_at(p, s->line, "script '%s/%s': restart_max_delay is below restart_delay",
                    s->tenant_name, s->name);
    }
    for (size_t i = 0; i < c->n_tenants; i++) {
        struct brk_cfg_tenant *t = &c->tenants[i];
        if (!t->name) perr_at(p, t->line, "out of memory");
    }
}

void brk_cfg_free(struct brk_cfgfile *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_tenants; i++) {
        free(c->tenants[i].name);
        pol_free(&c->tenants[i].policy);
    }
    for (size_t i = 0; i < c->n_scripts; i++) {
        free(c->scripts[i].name);
        free(c->scripts[i].tenant_name);
        free(c->scripts[i].path);
    }
    free(c->tenants);
    free(c->scripts);
    free(c->path);
    free(c->admin_socket);
    free(c->audit_log);
    free(c->worker_path);
    free(c->ca_file);
    free(c);
}

int brk_cfg_parse(const char *name, const char *text, size_t len, unsigned flags,
                  struct brk_cfgfile **out, char **errors)
{
    *out = NULL;
    *errors = NULL;
    struct parser p = {.file = name, .flags = flags};
    p.c = calloc(1, sizeof *p.c);
    char *dcopy = strdup(name);
    if (dcopy) {
        char *d = dirname(dcopy);
        char real[PATH_MAX];
        p.dir = strdup(realpath(d, real) ? real : d);
        free(dcopy);
    }
    if (!p.c || !p.dir) {
        free(p.c);
        free(p.dir);
        *errors = strdup("out of memory\n");
        return 1;
    }
    p.c->path = strdup(name);
    p.c->drain_timeout_ms = 10000;
    p.c->ring_bytes = 4u << 20;
    p.c->ready_timeout_ms = 10000;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[i]) * 1099511628211ull;
    p.c->digest = h;

    char *line = malloc(MAX_LINE + 1);
    size_t pos = 0;
    while (line && pos < len) {
        p.line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (memchr(text + pos, 0, n)) {
            perr(&p, "NUL byte in line");
        } else if (n > MAX_LINE) {
            perr(&p, "line longer than %d bytes", MAX_LINE);
        } else {
            memcpy(line, text + pos, n);
            line[n] = 0;
            parse_line(&p, line);
        }
        pos += n + 1;
    }
    if (!line) perr(&p, "out of memory");
    free(line);
    finish(&p);
    free(p.dir);
    if (p.n_err) {
        brk_cfg_free(p.c);
        *errors = p.err ? p.err : strdup("out of memory\n");
        return p.n_err;
    }
    free(p.err);
    *out = p.c;
    return 0;
}

int brk_cfg_load(const char *path, unsigned flags, struct brk_cfgfile **out, char **errors)
{
    *out = NULL;
    *errors = NULL;
    FILE *f = fopen(path, "rb");
    char msg[PATH_MAX + 200];
    if (!f) {
        snprintf(msg, sizeof msg, "%s:0: cannot open: %s\n", path, strerror(errno));
        *errors = strdup(msg);
        return 1;
    }
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > MAX_FILE) {
        snprintf(msg, sizeof msg, "%s:0: %s\n", path,
                 !buf  ? "out of memory"
                 : bad ? "read error"
                       : "file larger than 4 MiB");
        free(buf);
        *errors = strdup(msg);
        return 1;
    }
    int rc = brk_cfg_parse(path, buf, n, flags, out, errors);
    free(buf);
    return rc;
}

struct brk_cfg_tenant *brk_cfg_tenant(const struct brk_cfgfile *c, const char *name)
{
    for (size_t i = 0; c && i < c->n_tenants; i++)
        if (!strcmp(c->tenants[i].name, name)) return &c->tenants[i];
    return NULL;
}

struct brk_cfg_script *brk_cfg_script(const struct brk_cfgfile *c, const char *tenant,
                                      const char *name)
{
    for (size_t i = 0; c && i < c->n_scripts; i++)
        if (!strcmp(c->scripts[i].tenant_name, tenant) && !strcmp(c->scripts[i].name, name))
            return &c->scripts[i];
    return NULL;
}

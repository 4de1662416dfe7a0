/* `broker serve`: tenants' scripts as supervised units (serve.h).
 *
 * Layer: broker/. Never runs Lua; scripts are read here and sent to the
 * worker. Restart policy: a unit whose worker ended is restarted according
 * to its `restart` setting after a back-off delay that doubles from
 * restart_delay up to restart_max_delay (reset after a run longer than
 * restart_max_delay); more than start_limit starts within start_window puts it
 * in FAILED; a seccomp or protocol violation puts it in QUARANTINED. Both stay
 * until the operator runs `admin start`. */
#include "broker/serve.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "broker/addr.h"
#include "broker/audit.h"
#include "broker/policy.h"
#include "broker/url.h"
#include "broker/utf8.h"

static const char *const ustate_names[] = {
#define BRK_U_(n, s) s,
    BRK_UNIT_STATES(BRK_U_)
#undef BRK_U_
};

static void unit_start(struct brk_unit *u, int automatic);
static void wake_waiting(struct brk_serve *s, struct brk_tenant *t);

/* ---- tenants and units ---- */

static struct brk_tenant *tenant_find(struct brk_serve *s, const char *name)
{
    for (struct brk_tenant *t = s->tenants; t; t = t->next)
        if (!strcmp(t->name, name)) return t;
    return NULL;
}

static struct brk_tenant *tenant_get(struct brk_serve *s, const char *name)
{
    struct brk_tenant *t = tenant_find(s, name);
    if (t) return t;
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    /* Appended, so status lists tenants in configuration order. */
    struct brk_tenant **pp = &s->tenants;
    while (*pp)
        pp = &(*pp)->next;
    *pp = t;
    return t;
}

static struct brk_unit *unit_find(struct brk_serve *s, const char *tenant, const char *name)
{
    for (struct brk_unit *u = s->units; u; u = u->next)
        if (!strcmp(u->t->name, tenant) && !strcmp(u->name, name)) return u;
    return NULL;
}

static struct brk_unit *unit_get(struct brk_serve *s, struct brk_tenant *t, const char *name)
{
    struct brk_unit *u = unit_find(s, t->name, name);
    if (u) return u;
    u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->s = s;
    u->t = t;
    u->name = strdup(name);
    size_t n = strlen(t->name) + strlen(name) + 2;
    u->label = malloc(n);
    if (!u->name || !u->label) {
        free(u->name);
        free(u->label);
        free(u);
        return NULL;
    }
    snprintf(u->label, n, "%s/%s", t->name, name);
    u->state = BRK_U_STOPPED;
    struct brk_unit **pp = &s->units;
    while (*pp)
        pp = &(*pp)->next;
    *pp = u;
    return u;
}

/* ---- starting and ending ---- */

static char *read_script(const char *path, size_t *len, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t c = 64u << 20;
    char *buf = malloc(c + 1);
    size_t n = buf ? fread(buf, 1, c + 1, f) : 0;
    int bad = !buf || ferror(f) || n > c;
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, cap, "%s: %s", path, !buf ? "out of memory" : "unreadable or over 64 MiB");
        return NULL;
    }
    *len = n;
    return buf;
}

static void on_backoff_end(struct brk_loop *loop, struct brk_timer *tm)
{
    struct brk_unit *u = (struct brk_unit *)((char *)tm - offsetof(struct brk_unit, timer));
    if (u->state == BRK_U_BACKOFF) unit_start(u, 1);
}

/* Schedules a restart after the back-off delay. */
static void unit_backoff(struct brk_unit *u)
{
    struct brk *b = u->s->b;
    if (!u->delay_ms) u->delay_ms = u->cfg->restart_delay_ms;
    uint32_t d = u->delay_ms;
    u->delay_ms = d > u->cfg->restart_max_delay_ms / 2 ? u->cfg->restart_max_delay_ms : d * 2;
    u->state = BRK_U_BACKOFF;
    brk_info(b, "%s: restart in %u ms", u->label, d);
    brk_timer_start(b->loop, &u->timer, brk_now_ns() + (int64_t)d * 1000000, on_backoff_end);
}

static void on_stop_timeout(struct brk_loop *loop, struct brk_timer *tm)
{
    struct brk_unit *u = (struct brk_unit *)((char *)tm - offsetof(struct brk_unit, timer));
    if (u->w)
        brk_worker_kill(u->w, BRK_WEND_KILLED,
                        "%s: did not end within drain_timeout (%u ms) of "
                        "being stopped",
                        u->label, u->s->cfg->drain_timeout_ms);
}

/* Stops the unit's worker: SHUTDOWN (the script's run ends, its connections
 * close with 1001), then a kill if it has not ended within drain_timeout;
 * now = 1 kills at once. The unit is not restarted (stop_requested). */
static void unit_stop(struct brk_unit *u, const char *why, int now)
{
    struct brk *b = u->s->b;
    brk_timer_stop(b->loop, &u->timer);
    if (!u->w) return;
    u->stop_requested = 1;
    if (now) {
        brk_worker_kill(u->w, BRK_WEND_KILLED, "%s", why);
        return;
    }
    brk_worker_shutdown(u->w, 1001, why);
    if (u->w)
        brk_timer_start(b->loop, &u->timer,
                        brk_now_ns() + (int64_t)u->s->cfg->drain_timeout_ms * 1000000,
                        on_stop_timeout);
}

static void unit_start(struct brk_unit *u, int automatic)
{
    struct brk_serve *s = u->s;
    struct brk *b = s->b;
    struct brk_tenant *t = u->t;
    if (s->draining || u->w || !u->cfg || !t->cfg) return;
    brk_timer_stop(b->loop, &u->timer);
    if (t->n_workers >= t->cfg->quota.max_workers) {
        if (u->state != BRK_U_WAITING) {
            t->rejected[BRK_Q_WORKERS]++;
            brk_log(b, "%s: waiting: tenant %s runs %u workers (max_workers)", u->label, t->name,
                    t->n_workers);
        }
        u->state = BRK_U_WAITING;
        return;
    }
    int64_t now = brk_now_ns();
    if (!u->window_ns || now - u->window_ns > (int64_t)u->cfg->start_window_ms * 1000000) {
        u->window_ns = now;
        u->window_starts = 0;
    }
    if (u->window_starts >= u->cfg->start_limit) {
        u->state = BRK_U_FAILED;
        snprintf(u->last_why, sizeof u->last_why,
                 "start limit: %u starts within %u ms; not restarted (admin start releases it)",
                 u->window_starts, u->cfg->start_window_ms);
        brk_log(b, "%s: %s", u->label, u->last_why);
        return;
    }
    u->window_starts++;
    char err[512];
    size_t len = 0;
    char *src = read_script(u->cfg->path, &len, err, sizeof err);
    const char *serr = NULL;
    struct brk_worker *w = NULL;
    if (src) {
        const struct brk_quota *q = &t->cfg->quota;
        struct brk_wlimits lim = {q->memory, q->cpu_ms, q->wall_ms};
        const char *base = strrchr(u->cfg->path, '/');
        w = brk_worker_spawn_ex(b, base ? base + 1 : u->cfg->path, src, len, &lim, t, u, &serr);
        free(src);
        if (!w) snprintf(err, sizeof err, "cannot start a worker: %s", serr);
    }
    u->starts++;
    if (automatic) u->restarts++, t->restarts++;
    if (!w) {
        brk_log(b, "%s: %s", u->label, err);
        snprintf(u->last_why, sizeof u->last_why, "%.190s", err);
        u->ended = 1;
        u->last_end = BRK_WEND_CRASH;
        if (u->cfg->restart != BRK_RESTART_NEVER)
            unit_backoff(u);
        else
            u->state = BRK_U_FAILED;
        return;
    }
    w->sname = u->label;
    u->w = w;
    u->started_ns = now;
    u->state = BRK_U_RUNNING;
    t->n_workers++;
    brk_info(b, "%s: started as w%u (pid %d)", u->label, w->id, (int)w->pid);
}

/* Starts units of t that wait for a worker slot (as many as fit). */
static void wake_waiting(struct brk_serve *s, struct brk_tenant *t)
{
    for (struct brk_unit *u = s->units; u; u = u->next) {
        if (u->t != t || u->state != BRK_U_WAITING) continue;
        if (!t->cfg || t->n_workers >= t->cfg->quota.max_workers) return;
        unit_start(u, 0);
    }
}

static void check_drained(void *ctx)
{
    struct brk_serve *s = ctx;
    if (s->draining && s->b->n_workers == 0) {
        brk_log(s->b, "drained: every worker has ended");
        brk_loop_stop(s->b->loop);
    }
}

static void on_worker_end(struct brk *b, struct brk_worker *w)
{
    struct brk_serve *s = b->serve;
    struct brk_unit *u = w->unit;
    if (!u) return;
    struct brk_tenant *t = u->t;
    t->n_workers--;
    u->w = NULL;
    brk_timer_stop(b->loop, &u->timer); /* a pending stop's kill timer */
    u->ended = 1;
    u->last_end = w->end;
    const char *detail = w->why ? w->why : w->exit_msg ? w->exit_msg : "";
    snprintf(u->last_why, sizeof u->last_why, "%s%s%.150s", brk_wend_name(w->end),
             *detail ? ": " : "", detail);
    for (char *q = u->last_why; *q; q++)
        if (*q == '"' || *q == '\n') *q = '\'';
    int64_t ran_ms = (brk_now_ns() - u->started_ns) / 1000000;
    if (s->draining) {
        u->state = BRK_U_STOPPED;
        brk_defer(b->loop, check_drained, s);
        return;
    }
    if (u->stop_requested || !u->cfg || !t->cfg) {
        u->stop_requested = 0;
        u->state = u->cfg && t->cfg ? BRK_U_STOPPED : BRK_U_REMOVED;
    } else if (w->end == BRK_WEND_SECCOMP || w->end == BRK_WEND_VIOLATION) {
        u->state = BRK_U_QUARANTINED;
        brk_log(b,
                "%s: quarantined after a sandbox violation (%s); not restarted until "
                "`broker admin start %s`",
                u->label, brk_wend_name(w->end), u->label);
    } else if ((w->end == BRK_WEND_NORMAL && u->cfg->restart == BRK_RESTART_ALWAYS) ||
               (w->end != BRK_WEND_NORMAL && u->cfg->restart != BRK_RESTART_NEVER)) {
        if (ran_ms > (int64_t)u->cfg->restart_max_delay_ms)
            u->delay_ms = 0; /* it ran well for a while: start the back-off over */
        unit_backoff(u);
    } else {
        u->state = BRK_U_EXITED;
    }
    wake_waiting(s, t);
}

/* ---- reload ---- */

/* Re-checks every live connection of the tenant's workers against the new
 * policy and closes the ones it denies with 1008; then, if the tenant holds
 * more connections than its (new) max_connections, closes the excess with
 * 1013 (try again later: a quota that throttling cannot meet). Returns how
 * many were closed. */
static uint64_t revoke_tenant(struct brk_serve *s, struct brk_tenant *t)
{
    uint64_t n = 0;
    uint32_t kept = 0;
    struct brk *b = s->b;
    for (struct brk_worker *w = b->workers; w; w = w->next) {
        if (w->tenant != t || w->state == BRK_W_DEAD) continue;
        uint32_t cap = w->conns.cap;
        for (uint32_t i = 0; i < cap; i++) {
            uint32_t k = w->conns.keys[i];
            if (k == 0 || k == UINT32_MAX) continue;
            struct brk_conn *c = w->conns.vals[i];
            const char *url = brk_conn_url(c);
            struct pol_decision d1, d2;
            const struct pol_decision *d = NULL;
            int over = 0; /* allowed, but beyond max_connections */
            if (t->cfg) {
                if (pol_eval(&t->cfg->policy, POL_ACT_CONNECT, "*", &d1) != POL_ALLOW)
                    d = &d1;
                else if (!url || pol_eval(&t->cfg->policy, POL_ACT_URL, url, &d2) != POL_ALLOW)
                    d = &d2;
                else if (kept < t->cfg->quota.max_connections) {
                    kept++;
                    continue; /* still allowed */
                } else
                    over = 1;
            }
            char why[400];
            if (over)
                snprintf(why, sizeof why,
                         "revoked by a configuration reload: the tenant holds more than its "
                         "max_connections quota of %u",
                         t->cfg->quota.max_connections);
            else
                snprintf(why, sizeof why, "revoked by a configuration reload: %s",
                         d ? d->reason : "the tenant was removed");
            if (b->audit) {
                /* The URL without its query, as everywhere in the log. */
                char disp[BRK_URL_MAX + 1];
                snprintf(disp, sizeof disp, "%s", url ? url : "");
                char *q = strchr(disp, '?');
                if (q) *q = 0;
                const char *script = strchr(w->sname ? w->sname : "", '/');
                struct brk_audit_rec r = {.rev = b->cfg_rev,
                                          .tenant = t->name,
                                          .script = script ? script + 1 : NULL,
                                          .worker = w->id,
                                          .action = "revoke",
                                          .url = disp,
                                          .decision = "deny",
                                          .rule = over           ? "max_connections"
                                                  : d && d->rule ? d->rule->label
                                                                 : NULL,
                                          .reason = why};
                brk_audit_write(b->audit, &r);
            }
            if (over) {
                t->rejected[BRK_Q_CONNECTIONS]++;
                brk_conn_revoke(c, 1013, "try again later: over the max_connections quota");
            } else {
                brk_conn_revoke(c, 1008, "policy changed: connection revoked");
            }
            n++;
        }
    }
    t->revoked += n;
    return n;
}

/* Switches to a new, validated configuration. */
static void apply_config(struct brk_serve *s, struct brk_cfgfile *nc, int revoke,
                         struct brk_sbuf *out)
{
    struct brk *b = s->b;
    struct brk_cfgfile *old = s->cfg;
    for (struct brk_tenant *t = s->tenants; t; t = t->next)
        t->cfg = NULL;
    for (size_t i = 0; i < nc->n_tenants; i++) {
        struct brk_tenant *t = tenant_get(s, nc->tenants[i].name);
        if (t) t->cfg = &nc->tenants[i];
    }
    for (struct brk_unit *u = s->units; u; u = u->next)
        u->cfg = NULL;
    for (size_t i = 0; i < nc->n_scripts; i++) {
        struct brk_cfg_script *sc = &nc->scripts[i];
        struct brk_tenant *t = tenant_find(s, sc->tenant_name);
        struct brk_unit *u = t ? unit_get(s, t, sc->name) : NULL;
        if (u) u->cfg = sc;
    }
    s->cfg = nc;
    b->cfg.ready_ms = nc->ready_timeout_ms;
    b->cfg_rev++;
    /* Audit log: reopened every time (log rotation), possibly elsewhere. */
    if (nc->audit_log) {
        char err[512];
        struct brk_audit *a = brk_audit_open(nc->audit_log, err, sizeof err);
        if (a) {
            brk_audit_close(b->audit);
            b->audit = a;
        } else if (out) {
            brk_sbuf_printf(out, "warning: %s (keeping the previous audit log)\n", err);
        }
    } else {
        brk_audit_close(b->audit);
        b->audit = NULL;
    }
    uint64_t revoked = 0;
    int stopped = 0, started = 0;
    for (struct brk_unit *u = s->units; u; u = u->next) {
        if ((!u->cfg || !u->t->cfg) && u->state != BRK_U_REMOVED) {
            brk_timer_stop(b->loop, &u->timer);
            if (u->w) {
                unit_stop(u, "removed from the configuration", 0);
            } else {
                u->state = BRK_U_REMOVED;
            }
            stopped++;
        } else if (u->cfg && u->t->cfg && u->state == BRK_U_REMOVED) {
            u->state = BRK_U_STOPPED;
        }
        if (u->cfg && u->t->cfg && u->state == BRK_U_STOPPED && !u->ended && u->cfg->autostart &&
            !u->w) {
            unit_start(u, 0);
            started += u->w != NULL;
        }
    }
    if (revoke)
        for (struct brk_tenant *t = s->tenants; t; t = t->next)
            revoked += revoke_tenant(s, t);
    for (struct brk_tenant *t = s->tenants; t; t = t->next)
        if (t->cfg) wake_waiting(s, t);
    s->revoked += revoked;
    if (out) {
        brk_sbuf_printf(out,
                        "configuration revision %" PRIu64 " (%s): %zu tenants, %zu scripts, "
                        "%zu rules; %d scripts started, %d stopped",
                        b->cfg_rev, nc->path, nc->n_tenants, nc->n_scripts, nc->n_rules, started,
                        stopped);
        if (revoke) brk_sbuf_printf(out, "; %" PRIu64 " connections revoked", revoked);
        brk_sbuf_printf(out, "\n");
        if (old) {
            struct {
                const char *key, *was, *now;
            } rs[] = {{"admin_socket", old->admin_socket, nc->admin_socket},
                      {"worker", old->worker_path, nc->worker_path},
                      {"ca_file", old->ca_file, nc->ca_file}};
            for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
                if (!rs[i].was != !rs[i].now || (rs[i].was && strcmp(rs[i].was, rs[i].now)))
                    brk_sbuf_printf(out,
                                    "note: %s changed (%s -> %s); not applied: it takes effect "
                                    "after a restart of the broker\n",
                                    rs[i].key, rs[i].was ? rs[i].was : "unset",
                                    rs[i].now ? rs[i].now : "unset");
            if (old->ring_bytes != nc->ring_bytes)
                brk_sbuf_printf(out,
                                "note: ring_bytes changed (%" PRIu64 " -> %" PRIu64
                                "); not applied: it takes effect after a restart of the broker\n",
                                old->ring_bytes, nc->ring_bytes);
        }
    }
    brk_cfg_free(old);
}

int brk_serve_reload(struct brk_serve *s, int revoke, struct brk_sbuf *out)
{
    struct brk_cfgfile *nc = NULL;
    char *errors = NULL;
    int n = brk_cfg_load(s->config_path, 0, &nc, &errors);
    if (n) {
        s->reloads_failed++;
        brk_sbuf_printf(out, "reload refused: %d error%s; revision %" PRIu64 " stays in force\n%s",
                        n, n == 1 ? "" : "s", s->b->cfg_rev, errors ? errors : "");
        brk_log(s->b, "reload refused (%d errors); revision %" PRIu64 " stays in force", n,
                s->b->cfg_rev);
        free(errors);
        return -1;
    }
    s->reloads_ok++;
    apply_config(s, nc, revoke, out);
    brk_log(s->b, "reloaded: configuration revision %" PRIu64, s->b->cfg_rev);
    return 0;
}

/* ---- operator commands ---- */

int brk_serve_startstop(struct brk_serve *s, const char *target, int start, int now,
                        struct brk_sbuf *out)
{
    char tn[BRK_CFG_NAME_MAX * 2 + 2];
    snprintf(tn, sizeof tn, "%s", target);
    char *slash = strchr(tn, '/');
    const char *sn = NULL;
    if (slash) {
        *slash = 0;
        sn = slash + 1;
    }
    int found = 0;
    for (struct brk_unit *u = s->units; u; u = u->next) {
        if (strcmp(u->t->name, tn) || (sn && strcmp(u->name, sn))) continue;
        found++;
        if (!u->cfg || !u->t->cfg) {
            brk_sbuf_printf(out, "%s: removed from the configuration\n", u->label);
            continue;
        }
        if (start) {
            if (u->w) {
                brk_sbuf_printf(out, "%s: already running (w%u)\n", u->label, u->w->id);
                continue;
            }
            if (s->draining) {
                brk_sbuf_printf(out, "%s: not started: the broker is draining\n", u->label);
                continue;
            }
            u->window_starts = 0;
            u->window_ns = 0;
            u->delay_ms = 0;
            u->stop_requested = 0;
            unit_start(u, 0);
            if (u->w)
                brk_sbuf_printf(out, "%s: running as w%u\n", u->label, u->w->id);
            else
                brk_sbuf_printf(out, "%s: %s\n", u->label, ustate_names[u->state]);
        } else {
            if (u->w && u->stop_requested && !now) {
                brk_sbuf_printf(out, "%s: already stopping w%u\n", u->label, u->w->id);
            } else if (u->w) {
                uint32_t id = u->w->id;
                unit_stop(u, "stopped by the operator", now);
                brk_sbuf_printf(out,
                                now ? "%s: w%u killed\n"
                                    : "%s: stopping w%u (SHUTDOWN, close code 1001; killed "
                                      "after drain_timeout)\n",
                                u->label, id);
            } else {
                brk_timer_stop(s->b->loop, &u->timer);
                if (u->state == BRK_U_BACKOFF || u->state == BRK_U_WAITING)
                    u->state = BRK_U_STOPPED;
                brk_sbuf_printf(out, "%s: %s (not running)\n", u->label, ustate_names[u->state]);
            }
        }
    }
    if (!found) {
        brk_sbuf_printf(out, "no script matches '%s' (use TENANT or TENANT/SCRIPT)\n", target);
        return -1;
    }
    return 0;
}

static void stop_all_timers(struct brk_serve *s)
{
    for (struct brk_unit *u = s->units; u; u = u->next) {
        brk_timer_stop(s->b->loop, &u->timer);
        if (u->state == BRK_U_BACKOFF || u->state == BRK_U_WAITING) u->state = BRK_U_STOPPED;
    }
}

static void on_drain_timeout(struct brk_loop *loop, struct brk_timer *tm)
{
    struct brk_serve *s =
        (struct brk_serve *)((char *)tm - offsetof(struct brk_serve, drain_timer));
    for (struct brk_worker *w = s->b->workers; w; w = w->next)
        brk_worker_kill(w, BRK_WEND_KILLED, "drain timeout");
    brk_defer(loop, check_drained, s);
}

void brk_serve_drain(struct brk_serve *s, struct brk_sbuf *out)
{
    struct brk *b = s->b;
    if (out)
        brk_sbuf_printf(out, "draining %d workers (close code 1012)%s\n", b->n_workers,
                        s->draining ? " (already draining)" : "");
    if (s->draining) return;
    s->draining = 1;
    brk_log(b, "draining: %d workers, close code 1012", b->n_workers);
    stop_all_timers(s);
    brk_workers_shutdown(b, 1012);
    brk_timer_start(b->loop, &s->drain_timer,
                    brk_now_ns() + (int64_t)s->cfg->drain_timeout_ms * 1000000, on_drain_timeout);
    brk_defer(b->loop, check_drained, s);
}

static double secs(int64_t ns)
{
    return (double)ns / 1e9;
}

void brk_serve_status(struct brk_serve *s, struct brk_sbuf *out)
{
    struct brk *b = s->b;
    int64_t now = brk_now_ns();
    brk_sbuf_printf(out,
                    "broker pid %d up %.1fs config %s revision %" PRIu64 " digest %016" PRIx64
                    " reloads %" PRIu64 " ok %" PRIu64 " failed%s\n",
                    (int)getpid(), secs(now - s->started_ns), s->config_path, b->cfg_rev,
                    s->cfg->digest, s->reloads_ok, s->reloads_failed,
                    s->draining ? " DRAINING" : "");
    brk_sbuf_printf(out, "workers %d audit %s (%" PRIu64 " lines, %" PRIu64 " lost)\n",
                    b->n_workers, b->audit ? b->audit->path : "off", b->audit ? b->audit->lines : 0,
                    b->audit ? b->audit->errors : 0);
    for (struct brk_tenant *t = s->tenants; t; t = t->next) {
        uint64_t rej = 0;
        for (int i = 0; i < BRK_Q_COUNT; i++)
            rej += t->rejected[i];
        if (!t->cfg && !t->n_workers) continue;
        brk_sbuf_printf(out,
                        "tenant %s%s workers %u/%u connections %u/%u connects %" PRIu64
                        " bytes_in %" PRIu64 " bytes_out %" PRIu64 " messages_in %" PRIu64
                        " messages_out %" PRIu64 " policy_denied %" PRIu64
                        " address_denied %" PRIu64 " quota_rejected %" PRIu64 " throttled %" PRIu64
                        " log_suppressed %" PRIu64 " revoked %" PRIu64 "\n",
                        t->name, t->cfg ? "" : " (removed)", t->n_workers,
                        t->cfg ? t->cfg->quota.max_workers : 0, t->n_conns,
                        t->cfg ? t->cfg->quota.max_connections : 0, t->connects, t->bytes_in,
                        t->bytes_out, t->msgs_in, t->msgs_out, t->policy_denied, t->address_denied,
                        rej, t->throttled, t->log_suppressed, t->revoked);
        for (struct brk_unit *u = s->units; u; u = u->next) {
            if (u->t != t || u->state == BRK_U_REMOVED) continue;
            brk_sbuf_printf(out, "  script %s %s", u->label, ustate_names[u->state]);
            if (u->w)
                brk_sbuf_printf(out, " w%u pid %d up %.1fs connections %u", u->w->id,
                                (int)u->w->pid, secs(now - u->started_ns), u->w->n_conns);
            if (u->state == BRK_U_BACKOFF)
                brk_sbuf_printf(out, " restart in %.1fs", secs(u->timer.when - now));
            brk_sbuf_printf(out, " starts %" PRIu64 " restarts %" PRIu64, u->starts, u->restarts);
            if (u->ended) brk_sbuf_printf(out, " last_end \"%s\"", u->last_why);
            brk_sbuf_printf(out, "\n");
        }
    }
}

/* A JSON string (or null); bytes of invalid UTF-8 become '?'. */
static void json_str(struct brk_sbuf *out, const char *v)
{
    if (!v) {
        brk_sbuf_printf(out, "null");
        return;
    }
    int utf8 = ws_utf8_valid((const uint8_t *)v, strlen(v));
    brk_sbuf_printf(out, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            brk_sbuf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            brk_sbuf_printf(out, "\\u%04x", *p);
        else
            brk_sbuf_printf(out, "%c", *p >= 0x80 && !utf8 ? '?' : *p);
    }
    brk_sbuf_printf(out, "\"");
}

void brk_serve_status_json(struct brk_serve *s, struct brk_sbuf *out)
{
    struct brk *b = s->b;
    int64_t now = brk_now_ns();
    brk_sbuf_printf(out, "{\"pid\":%d,\"uptime_s\":%.3f,\"config\":", (int)getpid(),
                    secs(now - s->started_ns));
    json_str(out, s->config_path);
    brk_sbuf_printf(out,
                    ",\"revision\":%" PRIu64 ",\"digest\":\"%016" PRIx64
                    "\",\"reloads_ok\":%" PRIu64 ",\"reloads_failed\":%" PRIu64
                    ",\"draining\":%s,\"workers\":%d,"
                    "\"audit\":{\"path\":",
                    b->cfg_rev, s->cfg->digest, s->reloads_ok, s->reloads_failed,
                    s->draining ? "true" : "false", b->n_workers);
    json_str(out, b->audit ? b->audit->path : NULL);
    brk_sbuf_printf(out, ",\"lines\":%" PRIu64 ",\"lost\":%" PRIu64 "},\"tenants\":[",
                    b->audit ? b->audit->lines : 0, b->audit ? b->audit->errors : 0);
    int first_t = 1;
    for (struct brk_tenant *t = s->tenants; t; t = t->next) {
        if (!t->cfg && !t->n_workers) continue;
        brk_sbuf_printf(out, "%s{\"name\":", first_t ? "" : ",");
        first_t = 0;
        json_str(out, t->name);
        brk_sbuf_printf(
            out,
            ",\"removed\":%s,\"workers\":%u,\"max_workers\":%u,\"connections\":%u,"
            "\"max_connections\":%u,\"connects\":%" PRIu64 ",\"bytes_in\":%" PRIu64
            ",\"bytes_out\":%" PRIu64 ",\"messages_in\":%" PRIu64 ",\"messages_out\":%" PRIu64
            ",\"policy_denied\":%" PRIu64 ",\"address_denied\":%" PRIu64 ",\"throttled\":%" PRIu64
            ",\"log_suppressed\":%" PRIu64 ",\"revoked\":%" PRIu64 ",\"restarts\":%" PRIu64
            ",\"quota_rejected\":{",
            t->cfg ? "false" : "true", t->n_workers, t->cfg ? t->cfg->quota.max_workers : 0,
            t->n_conns, t->cfg ? t->cfg->quota.max_connections : 0, t->connects, t->bytes_in,
            t->bytes_out, t->msgs_in, t->msgs_out, t->policy_denied, t->address_denied,
            t->throttled, t->log_suppressed, t->revoked, t->restarts);
        for (int q = 0; q < BRK_Q_COUNT; q++)
            brk_sbuf_printf(out, "%s\"%s\":%" PRIu64, q ? "," : "",
                            brk_quota_name((enum brk_quota_id)q), t->rejected[q]);
        brk_sbuf_printf(out, "},\"scripts\":[");
        int first_u = 1;
        for (struct brk_unit *u = s->units; u; u = u->next) {
            if (u->t != t || u->state == BRK_U_REMOVED) continue;
            brk_sbuf_printf(out, "%s{\"name\":", first_u ? "" : ",");
            first_u = 0;
            json_str(out, u->name);
            brk_sbuf_printf(out, ",\"state\":\"%s\"", ustate_names[u->state]);
            if (u->w)
                brk_sbuf_printf(out,
                                ",\"worker\":%u,\"pid\":%d,\"uptime_s\":%.3f,\"connections\":%u",
                                u->w->id, (int)u->w->pid, secs(now - u->started_ns), u->w->n_conns);
            else
                brk_sbuf_printf(out, ",\"worker\":null,\"pid\":null,\"uptime_s\":null,"
                                     "\"connections\":0");
            if (u->state == BRK_U_BACKOFF)
                brk_sbuf_printf(out, ",\"restart_in_s\":%.3f", secs(u->timer.when - now));
            else
                brk_sbuf_printf(out, ",\"restart_in_s\":null");
            brk_sbuf_printf(out, ",\"starts\":%" PRIu64 ",\"restarts\":%" PRIu64 ",\"last_end\":",
                            u->starts, u->restarts);
            json_str(out, u->ended ? u->last_why : NULL);
            brk_sbuf_printf(out, "}");
        }
        brk_sbuf_printf(out, "]}");
    }
    brk_sbuf_printf(out, "]}\n");
}

/* Prometheus text exposition format, version 0.0.4. */
void brk_serve_metrics(struct brk_serve *s, struct brk_sbuf *out)
{
    struct brk *b = s->b;
#define HEAD(name, type, help)                                                                     \
    brk_sbuf_printf(out, "# HELP " name " " help "\n# TYPE " name " " type "\n")
    HEAD("wshost_config_revision", "gauge", "Configuration revision in force.");
    brk_sbuf_printf(out, "wshost_config_revision %" PRIu64 "\n", b->cfg_rev);
    HEAD("wshost_config_reloads_total", "counter", "Configuration reloads by result.");
    brk_sbuf_printf(out, "wshost_config_reloads_total{result=\"ok\"} %" PRIu64 "\n", s->reloads_ok);
    brk_sbuf_printf(out, "wshost_config_reloads_total{result=\"failed\"} %" PRIu64 "\n",
                    s->reloads_failed);
    HEAD("wshost_audit_lines_lost_total", "counter", "Audit lines that could not be written.");
    brk_sbuf_printf(out, "wshost_audit_lines_lost_total %" PRIu64 "\n",
                    b->audit ? b->audit->errors : 0);
    struct {
        const char *name, *type, *help;
        int field;
    } m[] = {
        {"wshost_workers", "gauge", "Live workers.", 0},
        {"wshost_connections", "gauge", "Live connections.", 1},
        {"wshost_connects_total", "counter", "Connections admitted.", 2},
        {"wshost_received_bytes_total", "counter", "Message bytes from servers to scripts.", 3},
        {"wshost_sent_bytes_total", "counter", "Message bytes from scripts to servers.", 4},
        {"wshost_received_messages_total", "counter", "Messages from servers to scripts.", 5},
        {"wshost_sent_messages_total", "counter", "Messages from scripts to servers.", 6},
        {"wshost_policy_denied_total", "counter", "Requests denied by the policy.", 7},
        {"wshost_address_denied_total", "counter", "Resolved addresses refused.", 8},
        {"wshost_throttled_total", "counter", "Times a connection was throttled by a rate.", 9},
        {"wshost_log_lines_suppressed_total", "counter", "Output lines dropped by the log quota.",
         10},
        {"wshost_revoked_total", "counter", "Connections closed by a revoking reload.", 11},
        {"wshost_restarts_total", "counter", "Automatic script restarts.", 12},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        brk_sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
                        m[i].type);
        for (struct brk_tenant *t = s->tenants; t; t = t->next) {
            uint64_t v[] = {t->n_workers,      t->n_conns,   t->connects,       t->bytes_in,
                            t->bytes_out,      t->msgs_in,   t->msgs_out,       t->policy_denied,
                            t->address_denied, t->throttled, t->log_suppressed, t->revoked,
                            t->restarts};
            brk_sbuf_printf(out, "%s{tenant=\"%s\"} %" PRIu64 "\n", m[i].name, t->name,
                            v[m[i].field]);
        }
    }
    HEAD("wshost_quota_rejected_total", "counter", "Requests refused by a quota.");
    for (struct brk_tenant *t = s->tenants; t; t = t->next)
        for (int q = 0; q < BRK_Q_COUNT; q++)
            brk_sbuf_printf(out,
                            "wshost_quota_rejected_total{tenant=\"%s\",quota=\"%s\"} %" PRIu64 "\n",
                            t->name, brk_quota_name((enum brk_quota_id)q), t->rejected[q]);
    HEAD("wshost_script_up", "gauge", "1 when the script's worker runs.");
    for (struct brk_unit *u = s->units; u; u = u->next)
        if (u->state != BRK_U_REMOVED)
            brk_sbuf_printf(out, "wshost_script_up{tenant=\"%s\",script=\"%s\",state=\"%s\"} %d\n",
                            u->t->name, u->name, ustate_names[u->state], u->w ? 1 : 0);
#undef HEAD
}

/* ---- admin commands ---- */

static int admin_cmd(void *ctx, char *line, struct brk_sbuf *out)
{
    struct brk_serve *s = ctx;
    char *save = NULL;
    char *cmd = strtok_r(line, " \t", &save);
    char *arg = cmd ? strtok_r(NULL, " \t", &save) : NULL;
    char *extra = arg ? strtok_r(NULL, " \t", &save) : NULL;
    if (!cmd) {
        brk_sbuf_printf(out, "empty command\n");
        return -1;
    }
    if (!strcmp(cmd, "status") && !arg) {
        brk_serve_status(s, out);
        return 0;
    }
    if (!strcmp(cmd, "status") && !strcmp(arg, "--json") && !extra) {
        brk_serve_status_json(s, out);
        return 0;
    }
    if (!strcmp(cmd, "metrics") && !arg) {
        brk_serve_metrics(s, out);
        return 0;
    }
    if (!strcmp(cmd, "reload") && !extra && (!arg || !strcmp(arg, "revoke")))
        return brk_serve_reload(s, arg != NULL, out);
    if ((!strcmp(cmd, "stop") || !strcmp(cmd, "start")) && arg && !extra)
        return brk_serve_startstop(s, arg, !strcmp(cmd, "start"), 0, out);
    if (!strcmp(cmd, "stop") && arg && extra && !strcmp(extra, "now") &&
        !strtok_r(NULL, " \t", &save))
        return brk_serve_startstop(s, arg, 0, 1, out);
    if (!strcmp(cmd, "drain") && !arg) {
        brk_serve_drain(s, out);
        return 0;
    }
    brk_sbuf_printf(out, "unknown command (known: status [--json], metrics, reload [revoke], "
                         "stop TENANT[/SCRIPT] [now], start TENANT[/SCRIPT], drain)\n");
    return -1;
}

/* ---- signals ---- */

static void on_signal(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_serve *s = (struct brk_serve *)((char *)io - offsetof(struct brk_serve, sig_io));
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            struct brk_sbuf out = {0};
            brk_serve_reload(s, 0, &out);
            if (out.len) brk_log(s->b, "SIGHUP: %.*s", (int)out.len - 1, out.p);
            brk_sbuf_free(&out);
        } else if (s->draining) {
            brk_log(s->b, "signal %u during the drain: stopping now", si.ssi_signo);
            for (struct brk_worker *w = s->b->workers; w; w = w->next)
                brk_worker_kill(w, BRK_WEND_KILLED, "broker stopping");
            brk_loop_stop(loop);
        } else {
            brk_log(s->b, "signal %u: draining", si.ssi_signo);
            brk_serve_drain(s, NULL);
        }
    }
}

/* ---- the service ---- */

int brk_serve_run(struct brk *b, const char *config_path, struct brk_cfgfile *cfg)
{
    struct brk_serve *s = calloc(1, sizeof *s);
    if (!s || !(s->config_path = strdup(config_path))) {
        fprintf(stderr, "broker serve: out of memory\n");
        free(s);
        brk_cfg_free(cfg);
        return 5;
    }
    s->b = b;
    s->started_ns = brk_now_ns();
    b->serve = s;
    b->on_worker_end = on_worker_end;
    int status = 0;
    if (cfg->audit_log) {
        char err[512];
        b->audit = brk_audit_open(cfg->audit_log, err, sizeof err);
        if (!b->audit) {
            fprintf(stderr, "broker serve: %s\n", err);
            status = 5;
        }
    }
    if (!status && cfg->admin_socket) {
        char err[512];
        s->admin = brk_admin_listen(b->loop, cfg->admin_socket, admin_cmd, s, err, sizeof err);
        if (!s->admin) {
            fprintf(stderr, "broker serve: %s\n", err);
            status = 5;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    s->sig_io =
        (struct brk_io){.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC), .fn = on_signal};
    if (!status && s->sig_io.fd >= 0) brk_io_set(b->loop, &s->sig_io, EPOLLIN);
    if (!status) {
        struct brk_sbuf out = {0};
        s->cfg = NULL;
        apply_config(s, cfg, 0, &out);
        cfg = NULL;
        brk_log(b, "serving: %.*s", out.len ? (int)out.len - 1 : 0, out.p ? out.p : "");
        brk_sbuf_free(&out);
        if (s->admin) brk_log(b, "admin socket %s", s->admin->path);
        printf("READY %d\n", (int)getpid());
        fflush(stdout);
        brk_loop_run(b->loop);
    }
    /* Teardown: whatever is left is killed (the loop has stopped). */
    for (struct brk_worker *w = b->workers; w; w = w->next)
        if (w->pidfd >= 0) kill(w->pid, SIGKILL);
    brk_admin_close(s->admin);
    if (s->sig_io.fd >= 0) {
        brk_io_stop(b->loop, &s->sig_io);
        close(s->sig_io.fd);
    }
    brk_audit_close(b->audit);
    b->audit = NULL;
    while (s->units) {
        struct brk_unit *u = s->units;
        s->units = u->next;
        brk_timer_stop(b->loop, &u->timer);
        free(u->name);
        free(u->label);
        free(u);
    }
    while (s->tenants) {
        struct brk_tenant *t = s->tenants;
        s->tenants = t->next;
        free(t->name);
        free(t);
    }
    brk_cfg_free(s->cfg);
    brk_cfg_free(cfg);
    free(s->config_path);
    b->serve = NULL;
    free(s);
    return status;
}

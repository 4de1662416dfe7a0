/* `broker serve --config FILE`: runs every tenant's scripts, restarts them
 * on failure (exponential back-off, start limit, quarantine after a sandbox
 * violation), answers the admin socket (status [--json], metrics, reload
 * [revoke], stop [now], start, drain) and writes the audit log.
 *
 * Layer: broker/. Uses config.h, quota.h, audit.h, admin.h and the worker
 * and connection API of broker.h. Never runs Lua. */
#ifndef BRK_SERVE_H
#define BRK_SERVE_H

#include <stdint.h>

#include "broker/admin.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/quota.h"

/* States of a script slot. */
#define BRK_UNIT_STATES(X)                                                                         \
    X(STOPPED, "stopped")         /* not running; start with `admin start` */                      \
    X(WAITING, "waiting")         /* held back by the tenant's max_workers quota */                \
    X(RUNNING, "running")         /* a worker runs it */                                           \
    X(BACKOFF, "backoff")         /* waiting to be restarted */                                    \
    X(EXITED, "exited")           /* ended, not restarted by its policy */                         \
    X(FAILED, "failed")           /* gave up: start limit hit or script unreadable */              \
    X(QUARANTINED, "quarantined") /* sandbox violation: never restarted automatically */           \
    X(REMOVED, "removed")         /* no longer in the configuration */

enum brk_ustate {
#define BRK_U_(n, s) BRK_U_##n,
    BRK_UNIT_STATES(BRK_U_)
#undef BRK_U_
};

/* One configured script (a slot that runs at most one worker at a time). */
struct brk_unit {
    struct brk_unit *next;            /* in the service's list */
    struct brk_serve *s;              /* owner */
    struct brk_tenant *t;             /* its tenant */
    char *name;                       /* owned: script name */
    char *label;                      /* owned: "tenant/script" */
    const struct brk_cfg_script *cfg; /* current settings (live config), NULL once removed */
    enum brk_ustate state;
    struct brk_worker *w;   /* running worker or NULL */
    struct brk_timer timer; /* back-off timer */
    uint32_t delay_ms;      /* next back-off delay */
    uint32_t window_starts; /* starts in the current start window */
    int64_t window_ns;      /* start of that window */
    int64_t started_ns;     /* when the current/last worker started */
    uint64_t starts;        /* workers started in total */
    uint64_t restarts;      /* of which automatic restarts */
    int ended;              /* 1 once a worker ended */
    int last_end;           /* enum brk_wend of the last end */
    char last_why[200];     /* its detail */
    int stop_requested;     /* operator stop: do not restart */
};

/* The service. */
struct brk_serve {
    struct brk *b;                /* the broker */
    char *config_path;            /* owned */
    struct brk_cfgfile *cfg;      /* live configuration (owned) */
    struct brk_tenant *tenants;   /* run-time tenants (owned list) */
    struct brk_unit *units;       /* script slots (owned list) */
    struct brk_admin *admin;      /* admin socket (owned) */
    struct brk_io sig_io;         /* signalfd */
    struct brk_timer drain_timer; /* kills what is left after drain_timeout */
    int draining;                 /* 1 once a drain started */
    int64_t started_ns;           /* service start */
    uint64_t reloads_ok, reloads_failed;
    uint64_t revoked; /* connections revoked by reloads */
};

/* Runs the service with an already loaded, validated configuration (taken
 * over) on an initialised broker. Returns the exit status (0 after a drain). */
int brk_serve_run(struct brk *b, const char *config_path, struct brk_cfgfile *cfg);

/* Admin operations (also used by signals). Each writes its answer to out and
 * returns 0 or -1. */
int brk_serve_reload(struct brk_serve *s, int revoke, struct brk_sbuf *out);
void brk_serve_status(struct brk_serve *s, struct brk_sbuf *out);
void brk_serve_metrics(struct brk_serve *s, struct brk_sbuf *out);
/* start or stop TENANT[/SCRIPT]; a stop is graceful (SHUTDOWN, close code
 * 1001, a kill after drain_timeout) unless now is 1 (kill at once). */
int brk_serve_startstop(struct brk_serve *s, const char *target, int start, int now,
                        struct brk_sbuf *out);
/* status as one JSON object (`status --json`). */
void brk_serve_status_json(struct brk_serve *s, struct brk_sbuf *out);
void brk_serve_drain(struct brk_serve *s, struct brk_sbuf *out);

#endif

/* Tenants at run time: their live counters and the quota and policy hooks
 * that worker.c and conn.c call for a worker's requests. Every hook accepts a
 * worker without a tenant (`broker run`), for which it falls back to the
 * broker-wide settings and enforces no tenant quota.
 *
 * Layer: broker/. Uses config.h (the tenant's settings), policy.h, addr.h and
 * audit.h. A quota breach is answered with the seed's error kinds
 * (RATE_LIMITED, INVALID) or by throttling a connection (reading paused,
 * send credits held back): never by blocking the loop or touching another
 * tenant. */
#ifndef BRK_QUOTA_H
#define BRK_QUOTA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "broker/config.h"

struct brk;
struct brk_worker;
struct proto_connect;

/* A token bucket: `rate` tokens per second, at most `burst` saved up. */
struct brk_bucket {
    double tokens;   /* tokens now (may be negative: debt, for throttling) */
    int64_t last_ns; /* time of the last refill (0 = never: starts full) */
};

/* Quotas counted in metrics (index of brk_tenant.rejected). */
#define BRK_QUOTAS(X)                                                                              \
    X(CONNECTIONS, "max_connections")                                                              \
    X(CONNECTS_PER_SEC, "connects_per_sec")                                                        \
    X(READ_LIMIT, "max_read_limit")                                                                \
    X(CHANNEL_CAPACITY, "max_channel_capacity")                                                    \
    X(COMPRESSION, "max_compression")                                                              \
    X(WORKERS, "max_workers")                                                                      \
    X(MESSAGES_OUT, "messages_out_per_sec")

enum brk_quota_id {
#define BRK_Q_(n, s) BRK_Q_##n,
    BRK_QUOTAS(BRK_Q_)
#undef BRK_Q_
        BRK_Q_COUNT
};
const char *brk_quota_name(enum brk_quota_id q);

/* One tenant at run time. Outlives reloads (matched by name); cfg points to
 * the tenant's section in the live configuration. */
struct brk_tenant {
    struct brk_tenant *next;              /* in the service's list */
    char *name;                           /* owned */
    const struct brk_cfg_tenant *cfg;     /* current settings (borrowed from the live config);
                                             NULL once removed by a reload */
    uint32_t n_workers;                   /* live workers */
    uint32_t n_conns;                     /* live connections of all its workers */
    struct brk_bucket connect_rate;       /* connects_per_sec */
    struct brk_bucket rx_bytes, tx_bytes; /* bytes_{in,out}_per_sec */
    struct brk_bucket rx_msgs, tx_msgs;   /* messages_{in,out}_per_sec */
    struct brk_bucket log_lines;          /* log_lines_per_sec */
    uint64_t bytes_in, bytes_out;         /* totals, payload bytes */
    uint64_t msgs_in, msgs_out;           /* totals, messages */
    uint64_t connects;                    /* connections admitted */
    uint64_t policy_denied;               /* policy denials (URL or action) */
    uint64_t address_denied;              /* resolved addresses refused */
    uint64_t rejected[BRK_Q_COUNT];       /* quota rejections by quota */
    uint64_t throttled;                   /* times a connection was throttled */
    uint64_t log_suppressed;              /* output lines dropped by the log quota */
    uint64_t revoked;                     /* connections closed by a revoking reload */
    uint64_t restarts;                    /* script restarts */
};

/* Token bucket: refills, then takes n tokens if there are that many. rate 0
 * means unlimited. Returns 1 when taken, 0 when not (nothing taken). */
int brk_bucket_take(struct brk_bucket *bk, double rate, double burst, double n, int64_t now_ns);
/* Takes n tokens even into debt; returns the ms until the debt is paid (0
 * when there is none). */
int64_t brk_bucket_charge(struct brk_bucket *bk, double rate, double burst, double n,
                          int64_t now_ns);

/* ---- hooks for worker.c and conn.c ---- */

/* Policy decision for a worker's request (tenant policy, or the broker's in
 * run mode), written to the audit log. resource: "*" or the canonical URL;
 * display: the URL without query for the log (NULL for websocket.connect).
 * Returns 0 when allowed, else -1 with the reason in why. */
int brk_q_policy(struct brk_worker *w, const char *action, const char *resource,
                 const char *display, char *why, size_t cap);
/* Address classes a host name of this worker may resolve to. */
unsigned brk_q_addr_mask(struct brk_worker *w);
/* Audits the address decision for one resolved address. */
void brk_q_audit_addr(struct brk_worker *w, const char *display, const struct sockaddr *sa,
                      socklen_t len, const char *cls, int allowed);
/* Quotas for a new connection after policy and option checks: option caps
 * (INVALID), connections and connects per second (RATE_LIMITED). Returns 0,
 * or -1 with *kind (PROTO_EK_*), *retryable and why set. */
int brk_q_connect_admit(struct brk_worker *w, const struct proto_connect *pc, const char *display,
                        int *kind, int *retryable, char *why, size_t cap);
/* read_limit for a CONNECT that asked for the default (0). */
uint64_t brk_q_default_read_limit(struct brk_worker *w, uint64_t dflt);
/* A connection of w was opened (+1) or released (-1). */
void brk_q_conn_count(struct brk_worker *w, int delta);
/* Received `bytes` of a message (msgs = 1 at its end). Returns ms the
 * connection must pause reading (0: go on). */
int64_t brk_q_rx(struct brk_worker *w, size_t bytes, int msgs);
/* The script sent `bytes` (msgs = 1 at a message's start). */
void brk_q_tx(struct brk_worker *w, size_t bytes, int msgs);
/* ms for which send credits must be held back (0: none); counts a throttle. */
int64_t brk_q_tx_wait(struct brk_worker *w);
/* ms for which the connection's output must stay in the broker because the
 * tenant is over bytes_out_per_sec or messages_out_per_sec (0: write now).
 * Counts nothing (it is asked at every socket write). */
int64_t brk_q_tx_hold(struct brk_worker *w);
/* Seconds of messages_out_per_sec a tenant may owe before throttling is given
 * up: a script that queues tiny (or empty) messages faster than that gets
 * the connection closed with 1013 instead of unbounded broker memory. */
#define BRK_Q_TX_DEBT_SEC 5
/* After the script began a message: 1 when the tenant owes more than
 * BRK_Q_TX_DEBT_SEC seconds of messages; the caller closes the connection
 * with 1013. Counted (quota messages_out_per_sec) and audited; the reason is
 * in why. 0 otherwise. */
int brk_q_tx_overrun(struct brk_worker *w, const char *display, char *why, size_t cap);
/* Output of `lines` lines: 1 to print, 0 to drop (counted). */
int brk_q_log_admit(struct brk_worker *w, uint32_t lines);

#endif

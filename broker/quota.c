/* Tenant quotas and per-tenant policy at request time (quota.h).
 *
 * Layer: broker/. Pure bookkeeping: token buckets and counters on the
 * tenant, decisions written to the audit log. Never blocks, never touches
 * another tenant's state. */
#include "broker/quota.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "broker/addr.h"
#include "broker/audit.h"
#include "broker/broker.h"
#include "broker/policy.h"
#include "broker/policy_check.h"
#include "shm/proto.h"

static const char *const quota_names[] = {
#define BRK_Q_(n, s) s,
    BRK_QUOTAS(BRK_Q_)
#undef BRK_Q_
};

const char *brk_quota_name(enum brk_quota_id q)
{
    return (unsigned)q < BRK_Q_COUNT ? quota_names[q] : "?";
}

/* ---- token buckets ---- */

static void refill(struct brk_bucket *bk, double rate, double burst, int64_t now)
{
    if (!bk->last_ns) {
        bk->tokens = burst;
        bk->last_ns = now;
        return;
    }
    double dt = (double)(now - bk->last_ns) / 1e9;
    if (dt > 0) {
        bk->tokens += dt * rate;
        if (bk->tokens > burst) bk->tokens = burst;
        bk->last_ns = now;
    }
}

int brk_bucket_take(struct brk_bucket *bk, double rate, double burst, double n, int64_t now_ns)
{
    if (rate <= 0) return 1;
    refill(bk, rate, burst, now_ns);
    if (bk->tokens + 1e-9 < n) return 0;
    bk->tokens -= n;
    return 1;
}

static int64_t debt_ms(const struct brk_bucket *bk, double rate)
{
    if (bk->tokens >= 0) return 0;
    int64_t ms = (int64_t)(-bk->tokens / rate * 1000.0) + 1;
    return ms > 10000 ? 10000 : ms;
}

int64_t brk_bucket_charge(struct brk_bucket *bk, double rate, double burst, double n,
                          int64_t now_ns)
{
    if (rate <= 0) return 0;
    refill(bk, rate, burst, now_ns);
    bk->tokens -= n;
    return debt_ms(bk, rate);
}

/* ---- audit helpers ---- */

static const char *script_of(const struct brk_worker *w)
{
    const char *s = w->sname ? strchr(w->sname, '/') : NULL;
    return s ? s + 1 : w->sname;
}

/* Denials one worker may add to the audit log per second; past that they
 * are counted and summarised in one record when the next second starts, so a
 * script that floods denied connects cannot fill the operator's disk. */
#define AUDIT_DENIALS_PER_SEC 200

static void audit(struct brk_worker *w, const char *action, const char *url, const char *addr,
                  int allowed, const char *rule, const char *reason)
{
    struct brk *b = w->b;
    if (!b->audit) return;
    if (!allowed) {
        int64_t now = brk_now_ns();
        if (now - w->audit_win_ns >= 1000000000) {
            w->audit_win_ns = now;
            w->audit_win_denials = 0;
            if (w->audit_suppressed) {
                char msg[128];
                snprintf(msg, sizeof msg,
                         "%llu further denials of this worker were not logged (more than %d a "
                         "second)",
                         (unsigned long long)w->audit_suppressed, AUDIT_DENIALS_PER_SEC);
                w->audit_suppressed = 0;
                struct brk_audit_rec sr = {.rev = b->cfg_rev,
                                           .tenant = w->tenant ? w->tenant->name : NULL,
                                           .script = script_of(w),
                                           .worker = w->id,
                                           .action = "audit",
                                           .decision = "deny",
                                           .reason = msg};
                brk_audit_write(b->audit, &sr);
            }
        }
        if (++w->audit_win_denials > AUDIT_DENIALS_PER_SEC) {
            w->audit_suppressed++;
            return;
        }
    }
    struct brk_audit_rec r = {
        .rev = b->cfg_rev,
        .tenant = w->tenant ? w->tenant->name : NULL,
        .script = script_of(w),
        .worker = w->id,
        .action = action,
        .url = url,
        .address = addr,
        .decision = allowed ? "allow" : "deny",
        .rule = rule,
        .reason = reason,
    };
    brk_audit_write(b->audit, &r);
}

/* ---- hooks ---- */

int brk_q_policy(struct brk_worker *w, const char *action, const char *resource,
                 const char *display, char *why, size_t cap)
{
    struct brk_tenant *t = w->tenant;
    if (!t) {
        int rc = brk_policy_check(w->b, action, resource, why, cap);
        return rc;
    }
    if (!t->cfg) {
        snprintf(why, cap, "tenant %s is no longer in the configuration", t->name);
        audit(w, action, display, NULL, 0, NULL, why);
        t->policy_denied++;
        return -1;
    }
    struct pol_decision d;
    int eff = pol_eval(&t->cfg->policy, action, resource, &d);
    audit(w, action, display, NULL, eff == POL_ALLOW, d.rule ? d.rule->label : NULL, d.reason);
    if (eff == POL_ALLOW) return 0;
    t->policy_denied++;
    snprintf(why, cap, "%s", d.reason);
    return -1;
}

unsigned brk_q_addr_mask(struct brk_worker *w)
{
    if (w->tenant) return w->tenant->cfg ? w->tenant->cfg->addr_mask : 0;
    return w->b->cfg.addr_allowed;
}

void brk_q_audit_addr(struct brk_worker *w, const char *display, const struct sockaddr *sa,
                      socklen_t len, const char *cls, int allowed)
{
    if (w->tenant && !allowed) w->tenant->address_denied++;
    if (!w->b->audit) return;
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, a, sizeof a);
    else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, a, sizeof a);
    char reason[160];
    snprintf(reason, sizeof reason, "%s address %s allow_addresses", cls,
             allowed ? "is in" : "is not in");
    audit(w, "address", display, a, allowed, "allow_addresses", reason);
}

/* Counts and audits a quota rejection whose message is already in why. */
static int reject(struct brk_worker *w, enum brk_quota_id q, const char *display, int kind,
                  int retryable, int *okind, int *oretry, const char *why)
{
    *okind = kind;
    *oretry = retryable;
    w->tenant->rejected[q]++;
    audit(w, "quota", display, NULL, 0, brk_quota_name(q), why);
    return -1;
}

int brk_q_connect_admit(struct brk_worker *w, const struct proto_connect *pc, const char *display,
                        int *kind, int *retryable, char *why, size_t cap)
{
    struct brk_tenant *t = w->tenant;
    if (!t || !t->cfg) return 0;
    const struct brk_quota *q = &t->cfg->quota;
    if (brk_cfg_compression_rank(pc->compression) > q->max_compression) {
        snprintf(why, cap,
                 "invalid option compression: this tenant allows at most %s (max_compression)",
                 brk_cfg_compression_name(q->max_compression));
        return reject(w, BRK_Q_COMPRESSION, display, PROTO_EK_INVALID, 0, kind, retryable, why);
    }
    if (pc->read_limit > q->max_read_limit) {
        snprintf(why, cap,
                 "invalid option read_limit: %u is above this tenant's max_read_limit of %llu "
                 "bytes",
                 pc->read_limit, (unsigned long long)q->max_read_limit);
        return reject(w, BRK_Q_READ_LIMIT, display, PROTO_EK_INVALID, 0, kind, retryable, why);
    }
    if (pc->channel_capacity > q->max_channel_capacity) {
        snprintf(why, cap,
                 "invalid option channel_capacity: %u is above this tenant's "
                 "max_channel_capacity of %u",
                 pc->channel_capacity, q->max_channel_capacity);
        return reject(w, BRK_Q_CHANNEL_CAPACITY, display, PROTO_EK_INVALID, 0, kind, retryable,
                      why);
    }
    if (t->n_conns >= q->max_connections) {
        snprintf(why, cap,
                 "too many connections: the tenant holds %u, its max_connections quota is %u",
                 t->n_conns, q->max_connections);
        return reject(w, BRK_Q_CONNECTIONS, display, PROTO_EK_RATE_LIMITED, 1, kind, retryable,
                      why);
    }
    if (!brk_bucket_take(&t->connect_rate, q->connects_per_sec, q->connects_per_sec, 1,
                         brk_now_ns())) {
        snprintf(why, cap, "rate limited: more than %u connects per second (connects_per_sec)",
                 q->connects_per_sec);
        return reject(w, BRK_Q_CONNECTS_PER_SEC, display, PROTO_EK_RATE_LIMITED, 1, kind, retryable,
                      why);
    }
    t->connects++;
    return 0;
}

uint64_t brk_q_default_read_limit(struct brk_worker *w, uint64_t dflt)
{
    if (w->tenant && w->tenant->cfg && w->tenant->cfg->quota.max_read_limit < dflt)
        return w->tenant->cfg->quota.max_read_limit;
    return dflt;
}

void brk_q_conn_count(struct brk_worker *w, int delta)
{
    if (w->tenant) w->tenant->n_conns += (uint32_t)delta;
}

int64_t brk_q_rx(struct brk_worker *w, size_t bytes, int msgs)
{
    struct brk_tenant *t = w->tenant;
    if (!t) return 0;
    t->bytes_in += bytes;
    t->msgs_in += (unsigned)msgs;
    if (!t->cfg) return 0;
    const struct brk_quota *q = &t->cfg->quota;
    int64_t now = brk_now_ns();
    int64_t a = brk_bucket_charge(&t->rx_bytes, (double)q->bytes_in_per_sec,
                                  (double)q->bytes_in_per_sec, (double)bytes, now);
    int64_t m = msgs ? brk_bucket_charge(&t->rx_msgs, q->messages_in_per_sec,
                                         q->messages_in_per_sec, msgs, now)
                     : 0;
    int64_t wait = a > m ? a : m;
    if (wait) t->throttled++;
    return wait;
}

void brk_q_tx(struct brk_worker *w, size_t bytes, int msgs)
{
    struct brk_tenant *t = w->tenant;
    if (!t) return;
    t->bytes_out += bytes;
    t->msgs_out += (unsigned)msgs;
    if (!t->cfg) return;
    const struct brk_quota *q = &t->cfg->quota;
    int64_t now = brk_now_ns();
    brk_bucket_charge(&t->tx_bytes, (double)q->bytes_out_per_sec, (double)q->bytes_out_per_sec,
                      (double)bytes, now);
    if (msgs)
        brk_bucket_charge(&t->tx_msgs, q->messages_out_per_sec, q->messages_out_per_sec, msgs, now);
}

int64_t brk_q_tx_wait(struct brk_worker *w)
{
    struct brk_tenant *t = w->tenant;
    if (!t || !t->cfg) return 0;
    const struct brk_quota *q = &t->cfg->quota;
    int64_t now = brk_now_ns();
    int64_t a = brk_bucket_charge(&t->tx_bytes, (double)q->bytes_out_per_sec,
                                  (double)q->bytes_out_per_sec, 0, now);
    int64_t m =
        brk_bucket_charge(&t->tx_msgs, q->messages_out_per_sec, q->messages_out_per_sec, 0, now);
    int64_t wait = a > m ? a : m;
    if (wait) t->throttled++;
    return wait;
}

int64_t brk_q_tx_hold(struct brk_worker *w)
{
    struct brk_tenant *t = w->tenant;
    if (!t || !t->cfg) return 0;
    const struct brk_quota *q = &t->cfg->quota;
    int64_t now = brk_now_ns();
    int64_t a = brk_bucket_charge(&t->tx_bytes, (double)q->bytes_out_per_sec,
                                  (double)q->bytes_out_per_sec, 0, now);
    int64_t m =
        brk_bucket_charge(&t->tx_msgs, q->messages_out_per_sec, q->messages_out_per_sec, 0, now);
    return a > m ? a : m;
}

int brk_q_tx_overrun(struct brk_worker *w, const char *display, char *why, size_t cap)
{
    struct brk_tenant *t = w->tenant;
    if (!t || !t->cfg || !t->cfg->quota.messages_out_per_sec) return 0;
    double rate = t->cfg->quota.messages_out_per_sec;
    brk_bucket_charge(&t->tx_msgs, rate, rate, 0, brk_now_ns());
    if (t->tx_msgs.tokens >= -rate * BRK_Q_TX_DEBT_SEC) return 0;
    snprintf(why, cap,
             "try again later: messages_out_per_sec quota of %u exceeded by more than %d s "
             "of messages",
             t->cfg->quota.messages_out_per_sec, BRK_Q_TX_DEBT_SEC);
    t->rejected[BRK_Q_MESSAGES_OUT]++;
    t->tx_msgs.tokens = -rate * BRK_Q_TX_DEBT_SEC; /* what the closed connection owed is gone */
    audit(w, "quota", display, NULL, 0, brk_quota_name(BRK_Q_MESSAGES_OUT), why);
    return 1;
}

int brk_q_log_admit(struct brk_worker *w, uint32_t lines)
{
    struct brk_tenant *t = w->tenant;
    if (!t || !t->cfg || !t->cfg->quota.log_lines_per_sec) return 1;
    double rate = t->cfg->quota.log_lines_per_sec;
    double n = lines > 2 * rate ? 2 * rate : lines;
    if (brk_bucket_take(&t->log_lines, rate, 2 * rate, n, brk_now_ns())) return 1;
    t->log_suppressed += lines;
    return 0;
}

/* The broker's core objects: the broker itself, its workers, and their
 * WebSocket connections; shared by main.c, worker.c (worker lifecycle and
 * record intake), conn.c (connections) and dns.c.
 *
 * Layer: broker/. Never includes Lua headers; talks to workers only through
 * shm/ring.h records (shm/proto.h). */
#ifndef BRK_BROKER_H
#define BRK_BROKER_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker/loop.h"
#include "shm/ring.h"

struct pol_policy;
struct brk_worker;
struct brk_conn;
struct brk_audit;
struct brk_serve;
struct brk_tenant;
struct brk_unit;

/* Settings of one broker process (from the command line or the config). */
struct brk_config {
    struct pol_policy *policy; /* rules for websocket.connect(.url) (owned by main) */
    uint32_t addr_allowed;     /* bit mask of address classes a resolved name may have */
    const char *ca_file;       /* extra trust anchors for wss (NULL = system store only) */
    const char *worker_path;   /* worker executable */
    uint64_t worker_mem;       /* Lua memory cap per worker, bytes */
    uint64_t cpu_ms;           /* CPU budget per script, ms (0 = none) */
    uint64_t wall_ms;          /* wall-clock budget per script, ms (0 = none) */
    uint32_t ready_ms;         /* a worker must be READY within this, ms */
    uint32_t max_conns;        /* concurrent connections per worker */
    size_t ring_bytes;         /* ring size per direction */
    int no_namespaces;         /* 1: do not try namespaces in workers */
    int quiet;                 /* 1: no broker diagnostics on stderr */
    int verbose;               /* 1: also informational lines (worker ready/ended) */
};

/* The broker process. */
struct brk {
    struct brk_loop *loop;      /* the one event loop (owned) */
    struct brk_config cfg;      /* settings (copied) */
    SSL_CTX *tls;               /* client TLS context, verification always on (owned) */
    struct brk_worker *workers; /* live workers, linked by next (owned) */
    uint32_t next_worker_id;    /* id for the next worker, from 1 */
    int n_workers;              /* live workers */
    struct brk_dns *dns;        /* resolver (owned) */
    uint8_t *rdbuf;             /* shared socket read buffer (owned) */
    size_t rdbuf_len;           /* its size */
    int last_status;            /* exit status of the last worker that ended */
    void (*on_worker_end)(struct brk *b, struct brk_worker *w); /* run mode: stop the loop */
    struct brk_audit *audit; /* audit log (serve mode; NULL = none) */
    uint64_t cfg_rev;        /* configuration revision (serve mode; 0 in run mode) */
    struct brk_serve *serve; /* service state (serve mode; NULL in run mode) */
};

/* Worker states. */
enum brk_wstate { BRK_W_STARTING, BRK_W_RUNNING, BRK_W_ENDING, BRK_W_DEAD };

/* Why a worker ended (logged; decides restart policy in service mode). */
#define BRK_WORKER_ENDS(X)                                                                         \
    X(NORMAL, "normal exit")                                                                       \
    X(SCRIPT_ERROR, "script error")                                                                \
    X(MEMORY, "memory cap")                                                                        \
    X(CPU, "CPU budget")                                                                           \
    X(WALL, "wall-clock budget")                                                                   \
    X(SECCOMP, "seccomp violation")                                                                \
    X(VIOLATION, "protocol violation")                                                             \
    X(NOT_READY, "not ready in time")                                                              \
    X(CRASH, "crash")                                                                              \
    X(KILLED, "killed by the broker")

enum brk_wend {
#define BRK_WE_(n, s) BRK_WEND_##n,
    BRK_WORKER_ENDS(BRK_WE_)
#undef BRK_WE_
};
const char *brk_wend_name(enum brk_wend e);

/* Small open-addressing map from connection id to connection. */
struct brk_connmap {
    uint32_t *keys;         /* 0 = empty, UINT32_MAX = deleted (owned) */
    struct brk_conn **vals; /* (owned array, borrowed values) */
    uint32_t cap, n, used;  /* slots, live entries, live + deleted */
};

/* One worker process and its link. */
struct brk_worker {
    struct brk *b;                /* owner */
    struct brk_worker *next;      /* in b->workers */
    uint32_t id;                  /* broker-wide id, printed as w<id> */
    pid_t pid;                    /* process id */
    int pidfd;                    /* pidfd (owned), readable when it exits */
    struct shm_link link;         /* rings and regions (owned) */
    struct brk_io efd_io;         /* the broker's eventfd of this link */
    struct brk_io pid_io;         /* the pidfd */
    struct brk_timer ready_timer; /* READY deadline */
    struct brk_timer wall_timer;  /* wall-clock budget */
    enum brk_wstate state;
    uint8_t *rec;             /* copy-out buffer for one record (owned) */
    int rec_shared;           /* the record being handled was not copied (intake) */
    uint32_t rec_cap;         /* its size = ring max payload */
    struct brk_connmap conns; /* live connections by id */
    uint32_t last_conn_id;    /* highest id the worker has used */
    uint32_t n_conns;         /* live connections */
    char *script;             /* SCRIPT payload (name len, name, source) (owned) */
    size_t script_len;
    size_t script_sent;            /* progress of chunked sending */
    struct brk_conn *blocked_head; /* connections with records waiting for ring space */
    struct brk_conn *blocked_tail;
    size_t outbox_bytes;        /* bytes waiting in connection outboxes */
    int killed;                 /* 1: the broker killed it */
    enum brk_wend end;          /* classification once ended */
    int exit_status;            /* PROTO_EXIT_* from the EXIT record, -1 if none */
    char *exit_msg;             /* message of the EXIT record (owned) */
    char *why;                  /* reason for a kill (owned) */
    struct brk_tenant *tenant;  /* serve mode: its tenant (quota.h), NULL in run mode */
    struct brk_unit *unit;      /* serve mode: the script slot it runs (serve.h) */
    const char *sname;          /* serve mode: "tenant/script" (borrowed from the unit) */
    uint64_t wall_ms;           /* wall-clock budget of this worker, ms (0 = none) */
    uint64_t log_suppressed;    /* output lines dropped since the last printed one */
    int64_t audit_win_ns;       /* start of the current one-second audit window */
    uint32_t audit_win_denials; /* denials audited in that window */
    uint64_t audit_suppressed;  /* denial records not written since the last summary */
};

/* Limits of one worker (brk_worker_spawn uses the broker-wide ones). */
struct brk_wlimits {
    uint64_t mem;     /* Lua memory cap, bytes */
    uint64_t cpu_ms;  /* CPU budget, ms (0 = none) */
    uint64_t wall_ms; /* wall-clock budget, ms (0 = none) */
};

/* Starts a worker for a script. Returns the worker or NULL with *err set. */
struct brk_worker *brk_worker_spawn(struct brk *b, const char *name, const char *src, size_t len,
                                    const char **err);
/* The same with per-worker limits and, in serve mode, tenant and unit (both
 * may be NULL). */
struct brk_worker *brk_worker_spawn_ex(struct brk *b, const char *name, const char *src, size_t len,
                                       const struct brk_wlimits *lim, struct brk_tenant *tenant,
                                       struct brk_unit *unit, const char **err);
/* Kills a worker for a reason (logged); its connections close with 1001. */
void brk_worker_kill(struct brk_worker *w, enum brk_wend why, const char *fmt, ...);
/* Asks every worker to end (SHUTDOWN) and closes connections with `code`. */
void brk_workers_shutdown(struct brk *b, int code);
/* The same for one worker (why: the close reason sent to the servers). */
void brk_worker_shutdown(struct brk_worker *w, int code, const char *why);

/* Emits a B2W record for a connection (or the worker when c is NULL) keeping
 * per-connection order; queues it when the ring is full. */
int brk_emit(struct brk_worker *w, struct brk_conn *c, uint16_t type, uint16_t flags,
             const void *p1, uint32_t n1, const void *p2, uint32_t n2);
/* Makes what was written visible to the worker. */
void brk_worker_publish(struct brk_worker *w);

/* Connections (conn.c). */
struct brk_conn *brk_conn_open(struct brk_worker *w, uint32_t id, const uint8_t *payload,
                               uint32_t len);
/* p is the payload; shared: it still lies in the worker's ring (a binary
 * SEND passed through, see intake in worker.c), so it is copied before any
 * check that reads it. */
void brk_conn_on_send(struct brk_conn *c, uint16_t flags, const uint8_t *p, uint32_t n, int shared);
void brk_conn_on_ping(struct brk_conn *c, const uint8_t *p, uint32_t n);
void brk_conn_on_close(struct brk_conn *c, const uint8_t *p, uint32_t n);
void brk_conn_on_credit(struct brk_conn *c, uint32_t n);
/* Ring space came back: flush the outbox; returns 1 when it is empty. */
int brk_conn_flush(struct brk_conn *c);
/* Canonical URL of a connection (with query), as the policy matched it. */
const char *brk_conn_url(const struct brk_conn *c);
/* Closes a connection on the operator's behalf (revoking reload): the
 * server gets `code`, the worker a CLOSED (or CONNECT_FAIL) that says why. */
void brk_conn_revoke(struct brk_conn *c, int code, const char *why);
/* The worker is gone: close the socket (1001) without telling the worker. */
void brk_conn_abort(struct brk_conn *c, int code, const char *why);
uint32_t brk_conn_id(const struct brk_conn *c);
struct brk_conn *brk_conn_next_blocked(struct brk_conn *c);
void brk_conn_set_next_blocked(struct brk_conn *c, struct brk_conn *next);
int brk_conn_is_blocked(const struct brk_conn *c);
void brk_conn_set_blocked(struct brk_conn *c, int on);

/* Connection map. */
int brk_connmap_put(struct brk_connmap *m, uint32_t id, struct brk_conn *c);
struct brk_conn *brk_connmap_get(const struct brk_connmap *m, uint32_t id);
void brk_connmap_del(struct brk_connmap *m, uint32_t id);
void brk_connmap_free(struct brk_connmap *m);

/* Diagnostics on stderr unless quiet: "broker: ..." */
void brk_log(struct brk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Informational lines, only with --verbose. */
void brk_info(struct brk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

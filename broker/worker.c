/* Worker lifecycle and record intake: spawning a worker with only its link
 * descriptors, reading and validating every record it writes, killing it on
 * a violation, and classifying how it ended.
 *
 * Layer: broker/. Every byte of the worker's region is hostile: records are
 * copied out once (shm_rx_read_hdr and a copy of the payload) and checked
 * here (type, direction, connection id, state, sizes) before anything acts on
 * them. The one exception is the payload of a large binary SEND (PASS_MIN),
 * which nothing checks: it is read once, by the masking copy into the
 * socket output, straight from the ring. The broker never
 * waits for a worker: when the ring to the worker is full, records wait in
 * connection outboxes and intake pauses, all without blocking. */
#include "broker/broker.h"

#include <errno.h>
#include <poll.h>
#include <linux/sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker/quota.h"
#include "shm/proto.h"

/* Records handled per intake round before yielding to other events. */
#define INTAKE_BATCH 512

/* Binary SEND payloads of at least this many bytes are not copied out of the
 * ring at intake: the masking copy into the socket output reads them once
 * (shm_rx_read_hdr). Smaller ones are copied like every other record. */
#define PASS_MIN 4096
/* Ring space kept free for replies before a W2B record is processed. */
#define REPLY_RESERVE 4096u
/* Outbox bytes of one worker above which its intake pauses. */
#define OUTBOX_LIMIT (1u << 20)

static const char *const wend_names[] = {
#define BRK_WE_(n, s) s,
    BRK_WORKER_ENDS(BRK_WE_)
#undef BRK_WE_
};

const char *brk_wend_name(enum brk_wend e)
{
    return wend_names[e];
}

void brk_log(struct brk *b, const char *fmt, ...)
{
    if (b->cfg.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("broker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void brk_info(struct brk *b, const char *fmt, ...)
{
    if (b->cfg.quiet || !b->cfg.verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("broker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- connection map ---- */

#define MAP_DELETED UINT32_MAX

static uint32_t map_hash(uint32_t k)
{
    k ^= k >> 16;
    k *= 0x7feb352dU;
    k ^= k >> 15;
    return k;
}

static int map_grow(struct brk_connmap *m)
{
    /* Sized by the live entries only (at most half full after the rehash,
     * which also drops the deleted markers): ids never repeat, so a worker
     * that keeps opening and closing connections fills the table with
     * markers, and doubling the old size each time would grow it (and
     * finally overflow cap) with the number of connections ever opened. */
    uint32_t cap = 16;
    while (cap / 2 < m->n + 1)
        cap *= 2;
    uint32_t *keys = calloc(cap, sizeof *keys);
    struct brk_conn **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        uint32_t k = m->keys[i];
        if (k == 0 || k == MAP_DELETED) continue;
        uint32_t j = map_hash(k) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->n;
    return 0;
}

int brk_connmap_put(struct brk_connmap *m, uint32_t id, struct brk_conn *c)
{
    if ((m->used + 1) * 4 >= m->cap * 3 && map_grow(m) < 0) return -1;
    uint32_t j = map_hash(id) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != MAP_DELETED)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == 0) m->used++;
    m->keys[j] = id;
    m->vals[j] = c;
    m->n++;
    return 0;
}

static int64_t map_find(const struct brk_connmap *m, uint32_t id)
{
    if (!m->cap || id == 0 || id == MAP_DELETED) return -1;
    uint32_t j = map_hash(id) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == id) return j;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

struct brk_conn *brk_connmap_get(const struct brk_connmap *m, uint32_t id)
{
    int64_t j = map_find(m, id);
    return j < 0 ? NULL : m->vals[j];
}

void brk_connmap_del(struct brk_connmap *m, uint32_t id)
{
    int64_t j = map_find(m, id);
    if (j < 0) return;
    m->keys[j] = MAP_DELETED;
    m->vals[j] = NULL;
    m->n--;
}

void brk_connmap_free(struct brk_connmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- emitting records to the worker ---- */

void brk_worker_publish(struct brk_worker *w)
{
    if (w->state != BRK_W_DEAD) shm_tx_publish(&w->link.tx);
}

/* Writes one record made of two payload pieces; SHM_EAGAIN when full. */
static int ring_write2(struct brk_worker *w, uint16_t type, uint16_t flags, uint32_t conn,
                       const void *p1, uint32_t n1, const void *p2, uint32_t n2)
{
    void *dst;
    int rc = shm_tx_reserve(&w->link.tx, n1 + n2, &dst);
    if (rc < 0) return rc;
    if (n1) memcpy(dst, p1, n1);
    if (n2) memcpy((uint8_t *)dst + n1, p2, n2);
    shm_tx_commit(&w->link.tx, type, flags, conn);
    return 0;
}

/* Connection outboxes live in conn.c; a connection with a non-empty outbox is
 * on the worker's blocked list, flushed in order when ring space returns. */
int brk_conn_outbox_add(struct brk_conn *c, uint16_t type, uint16_t flags, const void *p1,
                        uint32_t n1, const void *p2, uint32_t n2);
int brk_conn_outbox_empty(const struct brk_conn *c);

uint32_t brk_conn_head_len(const struct brk_conn *c);

static void block_conn(struct brk_worker *w, struct brk_conn *c)
{
    if (brk_conn_is_blocked(c)) return;
    brk_conn_set_blocked(c, 1);
    brk_conn_set_next_blocked(c, NULL);
    if (w->blocked_tail)
        brk_conn_set_next_blocked(w->blocked_tail, c);
    else
        w->blocked_head = c;
    w->blocked_tail = c;
    /* Ask the worker to wake us when it frees room for the first waiting
     * record. If there is room already (it consumed meanwhile), the flag is
     * not left set, so wake ourselves: the next round flushes. */
    if (shm_tx_prepare_wait(&w->link.tx, brk_conn_head_len(w->blocked_head)) == 1)
        shm_efd_signal(w->link.own_efd);
}

int brk_emit(struct brk_worker *w, struct brk_conn *c, uint16_t type, uint16_t flags,
             const void *p1, uint32_t n1, const void *p2, uint32_t n2)
{
    if (w->state == BRK_W_DEAD) return -1;
    uint32_t conn = c ? brk_conn_id(c) : 0;
    if (!c || brk_conn_outbox_empty(c)) {
        int rc = ring_write2(w, type, flags, conn, p1, n1, p2, n2);
        if (rc == 0) return 0;
        if (rc != SHM_EAGAIN) return rc;
        if (!c) return rc; /* worker-wide records are retried by their callers */
    }
    if (brk_conn_outbox_add(c, type, flags, p1, n1, p2, n2) < 0) return -1;
    w->outbox_bytes += 8 + (size_t)n1 + n2; /* as conn.c stores it */
    block_conn(w, c);
    return 0;
}

/* Writes a record that goes straight to the ring (used by conn.c when
 * flushing its outbox). */
int brk_ring_write(struct brk_worker *w, uint16_t type, uint16_t flags, uint32_t conn,
                   const void *p, uint32_t n)
{
    return ring_write2(w, type, flags, conn, p, n, NULL, 0);
}

static void flush_blocked(struct brk_worker *w)
{
    for (;;) {
        while (w->blocked_head) {
            struct brk_conn *c = w->blocked_head;
            if (!brk_conn_flush(c)) break;
            w->blocked_head = brk_conn_next_blocked(c);
            if (!w->blocked_head) w->blocked_tail = NULL;
            brk_conn_set_blocked(c, 0);
        }
        if (!w->blocked_head) return;
        /* Still full: sleep until the worker frees room for the first
         * waiting record, unless it already has (then try again). */
        if (shm_tx_prepare_wait(&w->link.tx, brk_conn_head_len(w->blocked_head)) != 1) return;
    }
}

/* conn.c tells us how many outbox bytes left its outbox. */
void brk_worker_outbox_drained(struct brk_worker *w, size_t n)
{
    w->outbox_bytes = n > w->outbox_bytes ? 0 : w->outbox_bytes - n;
}

/* A connection is being freed: take it off the blocked list. */
void brk_worker_unblock(struct brk_worker *w, struct brk_conn *c)
{
    if (!brk_conn_is_blocked(c)) return;
    struct brk_conn *prev = NULL;
    for (struct brk_conn *it = w->blocked_head; it; prev = it, it = brk_conn_next_blocked(it)) {
        if (it != c) continue;
        struct brk_conn *next = brk_conn_next_blocked(c);
        if (prev)
            brk_conn_set_next_blocked(prev, next);
        else
            w->blocked_head = next;
        if (w->blocked_tail == c) w->blocked_tail = prev;
        break;
    }
    brk_conn_set_blocked(c, 0);
}

/* ---- the script ---- */

static void send_script(struct brk_worker *w)
{
    if (!w->script || w->script_sent >= w->script_len) return;
    int rc = shm_tx_write_chunks(&w->link.tx, PROTO_SCRIPT, 0, 0, w->script, w->script_len,
                                 &w->script_sent);
    if (rc == SHM_EAGAIN) shm_tx_prepare_wait(&w->link.tx, REPLY_RESERVE);
    brk_worker_publish(w);
    if (w->script_sent >= w->script_len) {
        free(w->script);
        w->script = NULL;
    }
}

/* ---- killing and ending ---- */

static void close_all_conns(struct brk_worker *w, int code, const char *why)
{
    for (uint32_t i = 0; i < w->conns.cap; i++) {
        uint32_t k = w->conns.keys[i];
        if (k == 0 || k == MAP_DELETED) continue;
        brk_conn_abort(w->conns.vals[i], code, why);
    }
}

void brk_worker_kill(struct brk_worker *w, enum brk_wend why, const char *fmt, ...)
{
    if (w->killed || w->state == BRK_W_DEAD) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->killed = 1;
    w->end = why;
    free(w->why);
    w->why = strdup(msg);
    brk_log(w->b, "w%u killed (%s): %s", w->id, brk_wend_name(why), msg);
    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
    w->state = BRK_W_ENDING;
    close_all_conns(w, 1001, "worker ended");
}

void brk_worker_shutdown(struct brk_worker *w, int code, const char *why)
{
    if (w->state == BRK_W_DEAD || w->killed) return;
    uint16_t c = (uint16_t)code;
    brk_emit(w, NULL, PROTO_SHUTDOWN, 0, &c, sizeof c, NULL, 0);
    brk_worker_publish(w);
    close_all_conns(w, code, why);
}

void brk_workers_shutdown(struct brk *b, int code)
{
    for (struct brk_worker *w = b->workers; w; w = w->next)
        brk_worker_shutdown(w, code, "broker shutting down");
}

static void free_worker(void *ctx)
{
    struct brk_worker *w = ctx;
    shm_link_destroy(&w->link);
    brk_connmap_free(&w->conns);
    free(w->rec);
    free(w->script);
    free(w->exit_msg);
    free(w->why);
    free(w);
}

static int handle_record(struct brk_worker *w, const struct shm_rec *h, const uint8_t *p);

/* The worker is gone, so its ring no longer changes: take the output and the
 * EXIT record it wrote before it died, which an intake deferred to after this
 * event batch (INTAKE_BATCH) or a death reported before the eventfd would
 * otherwise lose (and the end would be misclassified as a crash). Other
 * records are dropped: nothing can answer them. */
static void drain_dead(struct brk_worker *w)
{
    struct shm_rec h;
    while (!w->killed && shm_rx_read_copy(&w->link.rx, &h, w->rec, w->rec_cap) == 1) {
        if ((h.type == PROTO_LOG || h.type == PROTO_EXIT) && handle_record(w, &h, w->rec) < 0)
            break;
    }
}

/* Why a worker that exited before READY stopped (worker/main.c exit codes). */
static const char *startup_failure(int status)
{
    switch (status) {
    case 10:
        return "start-up failed: bad worker arguments";
    case 11:
        return "start-up failed: cannot map the rings";
    case 12:
        return "start-up failed: sandbox could not be set up (no script ran)";
    case 13:
        return "start-up failed: cannot create the Lua runtime";
    case 14:
        return "start-up failed: no script received";
    default:
        return "exited before READY";
    }
}

static void on_pidfd(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_worker *w = (struct brk_worker *)((char *)io - offsetof(struct brk_worker, pid_io));
    struct brk *b = w->b;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) return;
    brk_io_stop(loop, &w->pid_io);
    brk_io_stop(loop, &w->efd_io);
    brk_timer_stop(loop, &w->ready_timer);
    brk_timer_stop(loop, &w->wall_timer);
    if (!w->killed && w->state != BRK_W_STARTING) drain_dead(w);
    if (!w->killed && w->state == BRK_W_STARTING && !w->why)
        w->why =
            strdup(si.si_code == CLD_EXITED ? startup_failure(si.si_status) : "died before READY");
    if (!w->killed) {
        if (si.si_code == CLD_EXITED) {
            if (w->exit_status == PROTO_EXIT_OK && si.si_status == 0)
                w->end = BRK_WEND_NORMAL;
            else if (w->exit_status == PROTO_EXIT_MEMORY)
                w->end = BRK_WEND_MEMORY;
            else if (w->exit_status == PROTO_EXIT_CPU)
                w->end = BRK_WEND_CPU;
            else if (w->exit_status == PROTO_EXIT_ERROR)
                w->end = BRK_WEND_SCRIPT_ERROR;
            else if (w->exit_status < 0 && si.si_status == SIGXCPU)
                w->end = BRK_WEND_CPU; /* RLIMIT_CPU in a PID namespace (worker/main.c) */
            else
                w->end = BRK_WEND_CRASH;
        } else if (si.si_status == SIGSYS) {
            w->end = BRK_WEND_SECCOMP;
        } else if (si.si_status == SIGXCPU) {
            w->end = BRK_WEND_CPU;
        } else {
            w->end = BRK_WEND_CRASH;
        }
    }
    const char *how = si.si_code == CLD_EXITED ? "exit status" : "signal";
    if (w->end == BRK_WEND_NORMAL)
        brk_info(b, "w%u ended: %s", w->id, brk_wend_name(w->end));
    else
        brk_log(b, "w%u ended: %s (%s %d)%s%s%s", w->id, brk_wend_name(w->end), how, si.si_status,
                w->end == BRK_WEND_SECCOMP ? " [security event: not restarted]" : "",
                w->why ? ": " : "", w->why ? w->why : "");
    close_all_conns(w, 1001, "worker ended");
    w->state = BRK_W_DEAD;
    close(w->pidfd);
    w->pidfd = -1;
    b->last_status = w->end == BRK_WEND_NORMAL                                    ? 0
                     : w->end == BRK_WEND_SCRIPT_ERROR                            ? 1
                     : w->end == BRK_WEND_MEMORY                                  ? 2
                     : w->end == BRK_WEND_CPU || w->end == BRK_WEND_WALL          ? 3
                     : w->end == BRK_WEND_SECCOMP || w->end == BRK_WEND_VIOLATION ? 4
                                                                                  : 5;
    /* unlink */
    for (struct brk_worker **pp = &b->workers; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    b->n_workers--;
    if (b->on_worker_end) b->on_worker_end(b, w);
    brk_defer(loop, free_worker, w);
}

static void on_ready_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_worker *w =
        (struct brk_worker *)((char *)t - offsetof(struct brk_worker, ready_timer));
    brk_worker_kill(w, BRK_WEND_NOT_READY, "no READY record within %u ms", w->b->cfg.ready_ms);
}

static void on_wall_timeout(struct brk_loop *loop, struct brk_timer *t)
{
    struct brk_worker *w =
        (struct brk_worker *)((char *)t - offsetof(struct brk_worker, wall_timer));
    brk_worker_kill(w, BRK_WEND_WALL, "wall-clock budget of %llu ms used up",
                    (unsigned long long)w->wall_ms);
}

/* ---- intake ---- */

/* Prints script output with the worker prefix, line by line. */
static void print_output(struct brk_worker *w, int is_err, const uint8_t *p, uint32_t n)
{
    FILE *f = is_err ? stderr : stdout;
    uint32_t start = 0;
    if (w->tenant) {
        /* Serve mode: the tenant's log rate quota; dropped lines are counted
         * and announced with the next line that gets through. */
        uint32_t lines = 1;
        for (uint32_t i = 0; i + 1 < n; i++)
            lines += p[i] == '\n';
        if (!brk_q_log_admit(w, lines)) {
            w->log_suppressed += lines;
            return;
        }
        if (w->log_suppressed) {
            fprintf(f, "[%s w%u] (%llu output lines suppressed: log_lines_per_sec quota)\n",
                    w->sname, w->id, (unsigned long long)w->log_suppressed);
            w->log_suppressed = 0;
        }
    }
    for (uint32_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\n') {
            if (i > start || i < n) {
                if (w->sname)
                    fprintf(f, "[%s w%u] ", w->sname, w->id);
                else
                    fprintf(f, "[w%u] ", w->id);
                /* Control bytes other than tab are shown escaped: scripts must
                 * not drive the operator's terminal. */
                for (uint32_t j = start; j < i; j++) {
                    unsigned char ch = p[j];
                    if (ch < 0x20 && ch != '\t')
                        fprintf(f, "\\x%02x", ch);
                    else
                        fputc(ch, f);
                }
                fputc('\n', f);
            }
            start = i + 1;
        }
    }
    fflush(f);
}

/* Handles one validated-by-the-ring record. Returns 0, or -1 after killing. */
static int handle_record(struct brk_worker *w, const struct shm_rec *h, const uint8_t *p)
{
    struct brk *b = w->b;
    switch (h->type) {
    case PROTO_READY:
        if (w->state != BRK_W_STARTING || h->conn != 0 || h->len > 1024) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "unexpected READY record");
            return -1;
        }
        w->state = BRK_W_RUNNING;
        brk_timer_stop(b->loop, &w->ready_timer);
        if (w->wall_ms)
            brk_timer_start(b->loop, &w->wall_timer, brk_now_ns() + (int64_t)w->wall_ms * 1000000,
                            on_wall_timeout);
        if (b->cfg.verbose && !b->cfg.quiet) {
            /* Worker text: printable ASCII only on the operator's terminal. */
            char txt[1025];
            uint32_t i;
            for (i = 0; i < h->len; i++)
                txt[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
            txt[i] = 0;
            brk_info(b, "w%u ready: %s", w->id, txt);
        }
        send_script(w);
        return 0;
    case PROTO_LOG:
        if (w->state == BRK_W_STARTING || h->conn != 0 || (h->flags & ~PROTO_F_STDERR)) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "malformed LOG record");
            return -1;
        }
        print_output(w, (h->flags & PROTO_F_STDERR) != 0, p, h->len);
        return 0;
    case PROTO_EXIT: {
        struct proto_exit ex;
        if (w->state != BRK_W_RUNNING || h->conn != 0 || h->len < sizeof ex || h->len > 65536) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "malformed EXIT record");
            return -1;
        }
        memcpy(&ex, p, sizeof ex);
        if (ex.status < 0 || ex.status > PROTO_EXIT_CPU) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "EXIT with unknown status %d", ex.status);
            return -1;
        }
        w->exit_status = ex.status;
        free(w->exit_msg);
        w->exit_msg = strndup((const char *)p + sizeof ex, h->len - sizeof ex);
        if (ex.status != PROTO_EXIT_OK && w->exit_msg && *w->exit_msg)
            print_output(w, 1, (const uint8_t *)w->exit_msg, (uint32_t)strlen(w->exit_msg));
        w->state = BRK_W_ENDING;
        close_all_conns(w, 1001, "script ended");
        return 0;
    }
    case PROTO_CONNECT:
        if (w->state != BRK_W_RUNNING || h->conn == 0 || h->conn <= w->last_conn_id ||
            h->conn == UINT32_MAX || h->flags) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "CONNECT with a reused or invalid id %u",
                            h->conn);
            return -1;
        }
        w->last_conn_id = h->conn;
        brk_conn_open(w, h->conn, p, h->len);
        return w->killed ? -1 : 0;
    case PROTO_SEND:
    case PROTO_PING:
    case PROTO_CLOSE:
    case PROTO_CREDIT: {
        if (w->state != BRK_W_RUNNING || h->conn == 0 || h->conn > w->last_conn_id) {
            brk_worker_kill(w, BRK_WEND_VIOLATION,
                            "record type %u for connection id %u it never "
                            "opened",
                            h->type, h->conn);
            return -1;
        }
        struct brk_conn *c = brk_connmap_get(&w->conns, h->conn);
        if (!c) {
            /* The connection ended and CLOSED is on its way or was read by
             * the worker after it wrote this: tell it, do not punish. */
            if (h->type == PROTO_PING || h->type == PROTO_CLOSE ||
                (h->type == PROTO_SEND && (h->flags & PROTO_F_BEGIN))) {
                struct proto_error e = {
                    .kind = PROTO_EK_INTERNAL, .retryable = 0, .op = (uint8_t)h->type};
                const char *m = "invalid connection id (the connection is closed)";
                e.msg_len = (uint16_t)strlen(m);
                brk_emit(w, NULL, PROTO_OP_ERROR, 0, &e, sizeof e, m, e.msg_len);
            }
            return 0;
        }
        if (h->type == PROTO_SEND)
            brk_conn_on_send(c, h->flags, p, h->len, w->rec_shared);
        else if (h->flags) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "record type %u with flags", h->type);
            return -1;
        } else if (h->type == PROTO_PING)
            brk_conn_on_ping(c, p, h->len);
        else if (h->type == PROTO_CLOSE)
            brk_conn_on_close(c, p, h->len);
        else {
            uint32_t n;
            if (h->len != sizeof n) {
                brk_worker_kill(w, BRK_WEND_VIOLATION, "malformed CREDIT record");
                return -1;
            }
            memcpy(&n, p, sizeof n);
            brk_conn_on_credit(c, n);
        }
        return w->killed ? -1 : 0;
    }
    default:
        brk_worker_kill(w, BRK_WEND_VIOLATION, "record type %u is not one a worker may send",
                        h->type);
        return -1;
    }
}

static void intake(struct brk_worker *w)
{
    struct shm_link *l = &w->link;
    shm_efd_drain(l->own_efd);
    shm_tx_end_wait(&l->tx);
    flush_blocked(w);
    send_script(w);
    int n = 0;
    /* Never more than one record can hold: shm_tx_prepare_wait clamps to
     * that, and a larger reserve here would spin on rings under 16 KiB. */
    uint32_t reserve = l->tx.max_payload < REPLY_RESERVE ? l->tx.max_payload : REPLY_RESERVE;
    while (!w->killed && w->state != BRK_W_DEAD) {
        if (w->outbox_bytes > OUTBOX_LIMIT || shm_tx_space(&l->tx) < reserve) {
            /* Replies would not fit: leave the worker's records where they
             * are until it makes room (it wakes us). */
            int r = shm_tx_prepare_wait(&l->tx, REPLY_RESERVE);
            if (r < 0) {
                brk_worker_kill(w, BRK_WEND_VIOLATION, "ring: %s", shm_strerror(r));
                return;
            }
            if (r == 0) break; /* the worker wakes us when it frees room */
            /* There is room: move waiting records into the ring first. If
             * the outboxes are still over the limit, flush_blocked has asked
             * the worker for a wake-up (it returns only with the flag set),
             * so stopping here cannot stall. */
            flush_blocked(w);
            if (!w->blocked_head) w->outbox_bytes = 0;
            if (w->outbox_bytes > OUTBOX_LIMIT) break;
            continue;
        }
        if (n == INTAKE_BATCH) {
            /* Yield through our own eventfd, not brk_defer: the loop runs
             * deferred calls until none are left, so a deferred intake of a
             * worker that keeps its ring full would never let the loop
             * poll sockets, timers or other workers again. */
            shm_efd_signal(l->own_efd);
            break;
        }
        struct shm_rec h;
        const uint8_t *p;
        int rc = shm_rx_read_hdr(&l->rx, &h, &p);
        if (rc < 0) {
            brk_worker_kill(w, BRK_WEND_VIOLATION, "ring: %s", shm_strerror(rc));
            return;
        }
        if (rc == 0) {
            shm_rx_release(&l->rx);
            rc = shm_rx_prepare_wait(&l->rx);
            if (rc < 0) {
                brk_worker_kill(w, BRK_WEND_VIOLATION, "ring: %s", shm_strerror(rc));
                return;
            }
            if (rc == 0) break;
            shm_rx_end_wait(&l->rx);
            continue;
        }
        n++;
        /* Large binary SEND payloads are passed through: the masking copy
         * into the connection's output is the broker's one copy of them.
         * Everything else is copied out before it is looked at. */
        int shared = h.type == PROTO_SEND && (h.flags & PROTO_F_BINARY) && h.len >= PASS_MIN;
        if (!shared && h.len) memcpy(w->rec, p, h.len);
        shm_rx_read_done(&l->rx, &h);
        w->rec_shared = shared;
        rc = handle_record(w, &h, shared ? p : w->rec);
        w->rec_shared = 0;
        if (rc < 0) return;
    }
    if (w->state != BRK_W_DEAD) {
        shm_rx_release(&l->rx);
        brk_worker_publish(w);
    }
}

static void on_efd(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_worker *w = (struct brk_worker *)((char *)io - offsetof(struct brk_worker, efd_io));
    intake(w);
}

/* ---- spawning ---- */

struct brk_worker *brk_worker_spawn(struct brk *b, const char *name, const char *src, size_t len,
                                    const char **err)
{
    struct brk_wlimits lim = {b->cfg.worker_mem, b->cfg.cpu_ms, b->cfg.wall_ms};
    return brk_worker_spawn_ex(b, name, src, len, &lim, NULL, NULL, err);
}

struct brk_worker *brk_worker_spawn_ex(struct brk *b, const char *name, const char *src, size_t len,
                                       const struct brk_wlimits *lim, struct brk_tenant *tenant,
                                       struct brk_unit *unit, const char **err)
{
    struct brk_worker *w = calloc(1, sizeof *w);
    if (!w) {
        *err = "out of memory";
        return NULL;
    }
    w->b = b;
    w->tenant = tenant;
    w->unit = unit;
    w->wall_ms = lim->wall_ms;
    w->id = ++b->next_worker_id;
    w->exit_status = -1;
    w->pidfd = -1;
    size_t nlen = strlen(name);
    w->script_len = 4 + nlen + len;
    w->script = malloc(w->script_len);
    if (!w->script || nlen > 4096) {
        *err = !w->script ? "out of memory" : "script name too long";
        free(w->script);
        free(w);
        return NULL;
    }
    uint32_t nl = (uint32_t)nlen;
    memcpy(w->script, &nl, 4);
    memcpy(w->script + 4, name, nlen);
    memcpy(w->script + 4 + nlen, src, len);

    struct shm_worker_fds fds;
    int rc = shm_link_create_broker(&w->link, b->cfg.ring_bytes, &fds);
    if (rc < 0) {
        *err = shm_strerror(rc);
        free(w->script);
        free(w);
        return NULL;
    }
    w->rec_cap = w->link.rx.max_payload;
    w->rec = malloc(w->rec_cap);
    if (!w->rec) {
        *err = "out of memory";
        shm_link_destroy(&w->link);
        free(w->script);
        free(w);
        return NULL;
    }

    char a_mem[32], a_cpu[32], a_pid[32];
    snprintf(a_mem, sizeof a_mem, "%llu", (unsigned long long)lim->mem);
    snprintf(a_cpu, sizeof a_cpu, "%llu", (unsigned long long)lim->cpu_ms);
    snprintf(a_pid, sizeof a_pid, "%d", (int)getpid());
    char *argv[10] = {"worker", "--mem", a_mem, "--cpu-ms", a_cpu, "--broker-pid", a_pid};
    int argc = 7;
    if (b->cfg.no_namespaces) argv[argc++] = "--no-namespaces";
    char *envp[] = {NULL};
    pid_t parent = getpid();
    /* Ask to be woken by the worker's first records before it can write
     * any (it may be faster than the rest of this function). */
    shm_rx_prepare_wait(&w->link.rx);
    /* The worker gets a PID namespace of its own when the broker may create
     * one (and namespaces are wanted): it is then its namespace's init and
     * sees no other process. The broker's own pidfd lets the child check,
     * after setting its parent-death signal, that the broker is still alive
     * (getppid() is 0 across the namespace boundary). */
    int self_pidfd = -1;
    pid_t pid = -1;
    if (!b->cfg.no_namespaces) {
        self_pidfd = (int)syscall(SYS_pidfd_open, parent, 0);
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_NEWPID;
        ca.exit_signal = SIGCHLD;
        if (self_pidfd >= 0) pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    }
    int in_pidns = pid >= 0;
    if (in_pidns) argv[argc++] = "--pid-namespace";
    argv[argc] = NULL;
    if (!in_pidns) pid = fork();
    if (pid < 0) {
        if (self_pidfd >= 0) close(self_pidfd);
        *err = "fork failed";
        free_worker(w);
        return NULL;
    }
    if (pid == 0) {
        /* Child: only the four link descriptors survive, as fds 3..6. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (in_pidns) {
            struct pollfd pf = {.fd = self_pidfd, .events = POLLIN};
            if (poll(&pf, 1, 0) != 0) _exit(120); /* the broker already ended */
        } else if (getppid() != parent) {
            _exit(120);
        }
        int src_fds[4] = {fds.region_b, fds.region_w, fds.efd_worker, fds.efd_broker};
        int tmp[4];
        for (int i = 0; i < 4; i++)
            tmp[i] = fcntl(src_fds[i], F_DUPFD_CLOEXEC, 100);
        for (int i = 0; i < 4; i++)
            if (tmp[i] < 0 || dup2(tmp[i], 3 + i) < 0) _exit(121);
        syscall(SYS_close_range, 0, 2, 0);
        syscall(SYS_close_range, 7, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execve(b->cfg.worker_path, argv, envp);
        _exit(122);
    }
    w->pid = pid;
    if (self_pidfd >= 0) close(self_pidfd);
    shm_link_close_regions(&w->link); /* the mappings stay; the worker has its copies */
    w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (w->pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        *err = "pidfd_open failed";
        free_worker(w);
        return NULL;
    }
    w->state = BRK_W_STARTING;
    w->efd_io = (struct brk_io){.fd = w->link.own_efd, .fn = on_efd};
    w->pid_io = (struct brk_io){.fd = w->pidfd, .fn = on_pidfd};
    brk_io_set(b->loop, &w->efd_io, EPOLLIN);
    brk_io_set(b->loop, &w->pid_io, EPOLLIN);
    /* If the worker's first records (READY) came before the wants-data flag
     * set above was seen, make sure they are read: wake ourselves. */
    if (shm_rx_prepare_wait(&w->link.rx) != 0) shm_efd_signal(w->link.own_efd);
    brk_timer_start(b->loop, &w->ready_timer, brk_now_ns() + (int64_t)b->cfg.ready_ms * 1000000,
                    on_ready_timeout);
    w->next = b->workers;
    b->workers = w;
    b->n_workers++;
    return w;
}

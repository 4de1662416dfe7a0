/* libFuzzer target: the broker's record intake, driven through its public
 * entry points with a real shared-memory link.
 *
 * Each input is a small program for a hostile "worker" that lives in this
 * process. brk_worker_spawn() builds a real link (memfd regions, eventfds)
 * and forks a child that exits at once (the worker path does not exist), so
 * the broker side is exactly the production one: its efd_io callback is the
 * intake (shm_rx_read_copy, then the record validation of broker/worker.c and
 * broker/conn.c). This file makes the broker's read-only view of region W
 * writable (mprotect; W is not write-sealed) and plays the worker: it appends
 * well-formed or garbage records, writes raw bytes anywhere in the ring, moves
 * the published head and its consumer tail forwards, backwards and out of
 * range, flips bits, and calls the intake between steps. CONNECT records may
 * target a loopback listener that accepts and drops connections, so SEND,
 * PING, CLOSE and CREDIT reach live connection objects.
 *
 * Built with FUZZ_FLIP (fuzz_intake_flip.c), a second thread keeps flipping
 * bytes of the ring data while the broker reads it (the time-of-check /
 * time-of-use case: shm_rx_read_copy must read every byte once).
 *
 * A crash, a sanitizer report or a hang is a finding; a killed worker is the
 * expected outcome for most inputs. FUZZ_VERBOSE=1 shows the broker's log
 * (kill reasons) when replaying an input.
 *
 * Layer: tests/fuzz. Uses broker/ and shm/ through their headers; no main(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/addr.h"
#include "broker/broker.h"
#include "broker/dns.h"
#include "broker/policy.h"
#include "shm/proto.h"
#include "shm/ring.h"

/* Process-wide broker, made once. */
static struct brk fz_b;
static struct pol_policy fz_policy = POL_POLICY_INIT;
static uint16_t fz_port; /* loopback listener that accepts and closes */
static char fz_url[64];  /* ws://127.0.0.1:PORT/ */

/* Input reader. */
struct rd {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct rd *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static uint16_t u16(struct rd *r)
{
    return (uint16_t)(u8(r) | (u8(r) << 8));
}

static uint32_t u32(struct rd *r)
{
    return (uint32_t)u16(r) | ((uint32_t)u16(r) << 16);
}

static uint64_t u64(struct rd *r)
{
    return (uint64_t)u32(r) | ((uint64_t)u32(r) << 32);
}

/* Copies up to n input bytes to dst, zero-filling the rest. */
static void take(struct rd *r, uint8_t *dst, size_t n)
{
    size_t k = n < r->n ? n : r->n;
    memcpy(dst, r->p, k);
    memset(dst + k, 0, n - k);
    r->p += k;
    r->n -= k;
}

#ifdef FUZZ_FLIP
/* The flipper: while `flip_region` is set it flips random bytes in it. The
 * mutex makes the main thread's teardown wait for a burst to end before the
 * mapping goes away. */
static pthread_mutex_t flip_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *flip_region;         /* ring data of W, or NULL (guarded by flip_mu) */
static size_t flip_len;              /* its length */
static _Atomic uint32_t flip_active; /* 1 while the broker reads */

static void *flipper(void *arg)
{
    (void)arg;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (;;) {
        if (!atomic_load_explicit(&flip_active, memory_order_relaxed)) {
            usleep(50);
            continue;
        }
        pthread_mutex_lock(&flip_mu);
        for (int i = 0; flip_region && i < 64; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            volatile uint8_t *b = flip_region + (x % flip_len);
            *b ^= (uint8_t)(1u << ((x >> 40) & 7));
        }
        pthread_mutex_unlock(&flip_mu);
    }
    return NULL;
}
#endif

/* Accepts connections and closes them (CONNECTs get a live socket that ends
 * during the handshake). */
static void *acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static void on_end(struct brk *b, struct brk_worker *w)
{
    (void)w;
    brk_loop_stop(b->loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    /* Script output (LOG records) goes nowhere. */
    FILE *devnull = freopen("/dev/null", "w", stdout);
    (void)devnull;

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("fuzz_intake: listener");
        abort();
    }
    fz_port = ntohs(sa.sin_port);
    snprintf(fz_url, sizeof fz_url, "ws://127.0.0.1:%u/", fz_port);
    pthread_t t;
    pthread_create(&t, NULL, acceptor, (void *)(intptr_t)lfd);
#ifdef FUZZ_FLIP
    pthread_t ft;
    pthread_create(&ft, NULL, flipper, NULL);
#endif

    char err[256], pat[80];
    snprintf(pat, sizeof pat, "ws://127.0.0.1:%u/*", fz_port);
    if (pol_allow_url(&fz_policy, pat, "fuzz", err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_intake: policy: %s\n", err);
        abort();
    }
    fz_b.cfg = (struct brk_config){.policy = &fz_policy,
                                   .addr_allowed = BRK_ADDR_DEFAULT_MASK,
                                   .worker_path = "/nonexistent/fuzz-worker",
                                   .worker_mem = 64u << 20,
                                   .ready_ms = 60000,
                                   .max_conns = 4,
                                   .ring_bytes = 4096,
                                   .quiet = !getenv("FUZZ_VERBOSE")};
    fz_b.loop = brk_loop_new();
    fz_b.dns = brk_dns_new(fz_b.loop);
    fz_b.rdbuf_len = 16384;
    fz_b.rdbuf = malloc(fz_b.rdbuf_len);
    fz_b.tls = SSL_CTX_new(TLS_client_method());
    fz_b.on_worker_end = on_end;
    if (!fz_b.loop || !fz_b.dns || !fz_b.rdbuf || !fz_b.tls) abort();
    return 0;
}

/* The fuzzer's worker end of the link: a producer over the (now writable)
 * ring data of region W, wired like the real worker's. */
struct fake {
    struct brk_worker *w;
    struct shm_tx tx;
    _Atomic uint64_t *head;  /* W: published head of the worker ring */
    _Atomic uint64_t *tail;  /* W: worker's tail of the broker ring */
    _Atomic uint32_t *wants; /* W: wants_data / wants_space */
    uint8_t *region;         /* W mapping (writable) */
    size_t region_len;
    uint32_t next_id; /* next CONNECT id for well-formed CONNECTs */
};

static void run_intake(struct fake *f)
{
    struct brk_worker *w = f->w;
    if (w->state == BRK_W_DEAD || w->killed) return;
#ifdef FUZZ_FLIP
    atomic_store(&flip_active, 1);
#endif
    w->efd_io.fn(fz_b.loop, &w->efd_io, 1);
#ifdef FUZZ_FLIP
    atomic_store(&flip_active, 0);
#endif
}

/* Builds a payload for a record of this type: well-formed-ish where a shape
 * is known (so validation gets past the first checks), from the input. */
static uint32_t build_payload(struct fake *f, struct rd *r, uint16_t type, uint16_t *flags,
                              uint32_t *conn, uint8_t *buf, uint32_t cap)
{
    uint8_t shape = u8(r);
    if (shape < 64) { /* raw payload */
        uint32_t len = u16(r) % (cap + 1);
        take(r, buf, len);
        return len;
    }
    switch (type) {
    case PROTO_CONNECT: {
        struct proto_connect pc;
        memset(&pc, 0, sizeof pc);
        pc.channel_capacity = 1 + u8(r) % 4;
        pc.compression = u8(r) % 4;
        pc.dial_timeout_ms = u8(r) & 1 ? 1 : 0;
        const char *u = fz_url;
        char alt[80];
        if (shape & 1) {
            snprintf(alt, sizeof alt, "%sx?%u", fz_url, u8(r));
            u = alt;
        } else if (shape & 2) {
            u = "ws://example.com/";
        }
        pc.url_len = (uint16_t)strlen(u);
        uint32_t off = sizeof pc;
        memcpy(buf + off, u, pc.url_len);
        off += pc.url_len;
        if (shape & 4) { /* one header */
            pc.n_headers = 1;
            const char *hn = shape & 8 ? "Host" : "X-Test", *hv = "v\r";
            uint16_t l1 = (uint16_t)strlen(hn), l2 = (uint16_t)(shape & 16 ? 2 : 1);
            memcpy(buf + off, &l1, 2);
            memcpy(buf + off + 2, hn, l1);
            off += 2 + l1;
            memcpy(buf + off, &l2, 2);
            memcpy(buf + off + 2, hv, l2);
            off += 2 + l2;
        }
        if (shape & 32) { /* one protocol */
            pc.n_protocols = 1;
            uint16_t l = 7;
            memcpy(buf + off, &l, 2);
            memcpy(buf + off + 2, "chat.v2", 7);
            off += 9;
        }
        memcpy(buf, &pc, sizeof pc);
        *flags = 0;
        if (u8(r) & 1) *conn = f->next_id++;
        return off;
    }
    case PROTO_SEND: {
        uint32_t n = u8(r);
        if (n > cap - 8) n = cap - 8;
        uint32_t off = 0;
        if (*flags & PROTO_F_BEGIN) {
            uint64_t total = shape & 1 ? u64(r) : n + (shape & 2 ? u8(r) : 0);
            memcpy(buf, &total, 8);
            off = 8;
        }
        take(r, buf + off, n);
        return off + n;
    }
    case PROTO_CLOSE: {
        struct proto_close pc;
        pc.code = shape & 1 ? 1000 : u16(r);
        pc.reason_len = u8(r) % 8;
        memcpy(buf, &pc, sizeof pc);
        take(r, buf + sizeof pc, pc.reason_len);
        return (uint32_t)sizeof pc + pc.reason_len;
    }
    case PROTO_CREDIT:
    case PROTO_PING: {
        uint64_t v = u8(r);
        memcpy(buf, &v, 8);
        return type == PROTO_CREDIT ? 4 : 8;
    }
    case PROTO_EXIT: {
        struct proto_exit ex = {.status = (int32_t)(u8(r) % 6) - 1};
        memcpy(buf, &ex, sizeof ex);
        memcpy(buf + sizeof ex, "bye", 3);
        return (uint32_t)sizeof ex + 3;
    }
    default: {
        uint32_t len = u8(r) % (cap + 1);
        take(r, buf, len);
        return len;
    }
    }
}

static void op_record(struct fake *f, struct rd *r)
{
    static const uint16_t types[] = {PROTO_READY, PROTO_LOG,  PROTO_EXIT,  PROTO_CONNECT,
                                     PROTO_SEND,  PROTO_PING, PROTO_CLOSE, PROTO_CREDIT,
                                     PROTO_SEND,  PROTO_SEND, PROTO_LOG,   PROTO_CREDIT};
    uint8_t t = u8(r);
    uint16_t type = t < 0xf0 ? types[t % (sizeof types / sizeof types[0])] : u16(r);
    uint8_t fl = u8(r);
    uint16_t flags = fl < 0xf0 ? (uint16_t)(fl & 0x0f) : u16(r);
    uint8_t c = u8(r);
    uint32_t conn = c < 0xf0 ? c % 5 : u32(r);
    uint8_t buf[4096];
    uint32_t cap = f->tx.max_payload < sizeof buf ? f->tx.max_payload : sizeof buf;
    uint32_t len = build_payload(f, r, type, &flags, &conn, buf, cap);
    int rc = shm_tx_write(&f->tx, type, flags, conn, buf, len);
    if (rc == SHM_EAGAIN) {
        shm_tx_publish(&f->tx);
        run_intake(f);
        shm_tx_write(&f->tx, type, flags, conn, buf, len);
    }
}

/* Moves the published head of the worker ring. */
static void op_head(struct fake *f, struct rd *r)
{
    uint64_t h = atomic_load(f->head);
    switch (u8(r) % 6) {
    case 0:
        h += (uint64_t)(int64_t)(int8_t)u8(r) * 8;
        break;
    case 1:
        h = u64(r);
        break;
    case 2:
        h += 1 + u8(r) % 7;
        break;
    case 3:
        h += f->tx.size + 8;
        break;
    case 4:
        h = f->tx.head;
        break; /* publish what was written */
    default:
        h -= 8;
        break;
    }
    atomic_store(f->head, h);
    if (u8(r) & 1) { /* keep the producer in step (so later records follow) */
        f->tx.head = f->tx.published = h;
    }
}

/* Moves the worker's consumer tail of the broker's ring. */
static void op_tail(struct fake *f, struct rd *r)
{
    struct brk_worker *w = f->w;
    uint64_t published = w->link.tx.published;
    uint64_t t = atomic_load(f->tail);
    switch (u8(r) % 5) {
    case 0:
        t = published;
        break; /* consumed everything (legitimate) */
    case 1:
        t = u64(r);
        break;
    case 2:
        t = t >= 8 ? t - 8 : t + 4;
        break;
    case 3:
        t = published + 8;
        break;
    default:
        t += (uint64_t)u8(r) * 8;
        break;
    }
    atomic_store(f->tail, t);
}

/* One input: spawn, run the program, tear down. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    uint8_t cfg = u8(&r);
    fz_b.cfg.ring_bytes = (size_t)4096 << (cfg & 3);
    const char *err = NULL;
    struct brk_worker *w = brk_worker_spawn(&fz_b, "fuzz.lua", "-- x", 4, &err);
    if (!w) return 0;
    struct fake f = {.w = w, .next_id = 1};
    f.region = w->link.peer_map;
    f.region_len = w->link.peer_len;
    if (mprotect(f.region, f.region_len, PROT_READ | PROT_WRITE) != 0) abort();
    f.head = (_Atomic uint64_t *)w->link.rx.peer_head;
    f.tail = (_Atomic uint64_t *)w->link.tx.peer_tail;
    f.wants = (_Atomic uint32_t *)w->link.rx.peer_wants_space;
    /* Producer wiring as the worker has it (trusted: it is "our" ring). */
    f.tx.data = (uint8_t *)w->link.rx.data;
    f.tx.size = w->link.rx.size;
    f.tx.max_payload = w->link.rx.max_payload;
    f.tx.head_pub = f.head;
    f.tx.peer_tail = w->link.rx.tail_pub;
    f.tx.own_wants_space = f.wants;
    f.tx.peer_wants_data = w->link.rx.own_wants_data;
    f.tx.peer_efd = -1; /* we call the intake ourselves */
    f.tx.trusted = 1;
#ifdef FUZZ_FLIP
    pthread_mutex_lock(&flip_mu);
    flip_region = f.tx.data;
    flip_len = f.tx.size;
    pthread_mutex_unlock(&flip_mu);
#endif

    if (cfg & 4) { /* start with a valid READY so the rest is "running" */
        shm_tx_write(&f.tx, PROTO_READY, 0, 0, "fuzz", 4);
        shm_tx_publish(&f.tx);
        run_intake(&f);
    }
    int steps = 0;
    while (r.n && steps++ < 256 && w->state != BRK_W_DEAD && !w->killed) {
        switch (u8(&r) % 10) {
        case 0:
        case 1:
        case 2:
            op_record(&f, &r);
            break;
        case 3:
            shm_tx_publish(&f.tx);
            break;
        case 4:
            shm_tx_publish(&f.tx);
            if (cfg & 8) atomic_store(f.tail, w->link.tx.published);
            run_intake(&f);
            break;
        case 5: { /* raw bytes anywhere in the ring data */
            uint32_t off = u16(&r) % f.tx.size;
            uint32_t n = u8(&r) % 32;
            if (n > f.tx.size - off) n = (uint32_t)(f.tx.size - off);
            take(&r, f.tx.data + off, n);
            break;
        }
        case 6:
            op_head(&f, &r);
            break;
        case 7:
            op_tail(&f, &r);
            break;
        case 8:
            f.wants[u8(&r) & 1] = u32(&r);
            break;
        default: { /* flip a bit anywhere in region W, control block included */
            uint32_t off = u32(&r) % f.region_len;
            f.region[off] ^= (uint8_t)(1u << (u8(&r) & 7));
            break;
        }
        }
    }
    shm_tx_publish(&f.tx);
    run_intake(&f);

#ifdef FUZZ_FLIP
    pthread_mutex_lock(&flip_mu);
    flip_region = NULL;
    pthread_mutex_unlock(&flip_mu);
#endif
    /* Teardown through the normal path: kill, reap, free (deferred calls). */
    if (w->state != BRK_W_DEAD) brk_worker_kill(w, BRK_WEND_KILLED, "fuzz input done");
    brk_loop_run(fz_b.loop);
    return 0;
}

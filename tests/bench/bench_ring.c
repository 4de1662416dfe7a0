/* Benchmark of the shared-memory rings between two real processes: spinning
 * throughput of 64-byte and 16 KiB records through the broker's validating
 * reader (shm_rx_read_copy), memcpy bandwidth measured in the same run for
 * comparison, and the eventfd wake-up round trip (ping-pong, both sides
 * sleeping) as p50/p99.
 *
 * Layer: tests/bench, uses shm/ only. Build with -O2 to report numbers. */
#include "shm/ring.h"
#include "shm/proto.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void wait_efd(int efd)
{
    struct pollfd p = {.fd = efd, .events = POLLIN};
    poll(&p, 1, 1000);
}

/* Keeps the optimiser from dropping copies whose result is not used. */
static volatile uint64_t sink;

/* memcpy bandwidth: chunk-sized copies out of a ring-sized buffer, the same
 * access pattern as the reader. Returns GB/s. */
static double memcpy_gbps(size_t chunk, size_t area, double secs)
{
    uint8_t *src = malloc(area), *dst = malloc(chunk);
    memset(src, 1, area);
    memset(dst, 0, chunk);
    uint64_t bytes = 0;
    size_t off = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 256; i++) {
            memcpy(dst, src + off, chunk);
            off = (off + chunk) % (area - chunk + 1);
            bytes += chunk;
        }
        sink += dst[chunk / 2];
        t = now_s();
    } while (t - t0 < secs);
    free(src);
    free(dst);
    return (double)bytes / (t - t0) / 1e9;
}

/* Spins this many times on a full or empty ring before sleeping on the
 * eventfd, so a descheduled peer (a busy machine) does not turn the run into
 * a spin-against-time-slices contest. */
#define SPIN_LIMIT 4000

/* The worker process of a throughput run: attaches and writes `count`
 * records of `len` payload bytes as fast as the ring lets it (spinning, then
 * sleeping when the ring stays full). */
static void producer(const struct shm_worker_fds *fds, uint32_t len, uint64_t count)
{
    struct shm_link w;
    if (shm_link_attach_worker(&w, fds) != 0) _exit(10);
    uint8_t *src = malloc(len ? len : 1);
    memset(src, 0xab, len);
    int spins = 0;
    for (uint64_t i = 0; i < count;) {
        void *p;
        int rc = shm_tx_reserve(&w.tx, len, &p);
        if (rc == SHM_EAGAIN) {
            shm_tx_publish(&w.tx);
            if (++spins < SPIN_LIMIT) {
                cpu_relax();
                continue;
            }
            spins = 0;
            if (shm_tx_prepare_wait(&w.tx, len) == 0) wait_efd(w.own_efd);
            shm_tx_end_wait(&w.tx);
            shm_efd_drain(w.own_efd);
            continue;
        }
        spins = 0;
        if (rc) _exit(11);
        memcpy(p, src, len);
        memcpy(p, &i, len >= 8 ? 8 : 0);
        shm_tx_commit(&w.tx, PROTO_SEND, 0, 1);
        if ((++i & 31) == 0) shm_tx_publish(&w.tx);
    }
    shm_tx_publish(&w.tx);
    _exit(0);
}

struct tp_result {
    double secs;    /* reader's elapsed time, first to last record */
    uint64_t count; /* records read */
    int errors;     /* read errors or wrong contents */
    int limited;    /* stopped by the time limit before count records */
};

static struct tp_result throughput(uint32_t len, size_t ring, uint64_t count)
{
    struct tp_result r = {0};
    struct shm_link b;
    struct shm_worker_fds fds;
    if (shm_link_create_broker(&b, ring, &fds) != 0) {
        r.errors = 1;
        return r;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) producer(&fds, len, count);
    uint8_t *buf = malloc(b.rx.max_payload);
    struct shm_rec h;
    double t0 = 0, deadline = now_s() + 4.0;
    uint64_t got = 0;
    int spins = 0;
    while (got < count) {
        int rc = shm_rx_read_copy(&b.rx, &h, buf, b.rx.max_payload);
        if (rc == 1) {
            uint64_t idx = 0;
            memcpy(&idx, buf, len >= 8 ? 8 : 0);
            if (h.len != len || (len >= 8 && idx != got)) r.errors++;
            if (got++ == 0) t0 = now_s();
            if ((got & 63) == 0) shm_rx_release(&b.rx);
            if ((got & 4095) == 0 && now_s() > deadline) {
                r.limited = 1;
                break;
            }
            spins = 0;
        } else if (rc == 0) {
            shm_rx_release(&b.rx);
            if (++spins < SPIN_LIMIT) {
                cpu_relax();
                continue;
            }
            spins = 0;
            if (now_s() > deadline) {
                r.limited = 1;
                break;
            }
            if (shm_rx_prepare_wait(&b.rx) == 0) wait_efd(b.own_efd);
            shm_rx_end_wait(&b.rx);
            shm_efd_drain(b.own_efd);
        } else {
            r.errors++;
            break;
        }
    }
    r.secs = now_s() - t0;
    r.count = got - 1; /* timed from the first record */
    int st;
    if (r.errors || r.limited) kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    if (!r.limited && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) r.errors++;
    free(buf);
    shm_link_destroy(&b);
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Ping-pong where both sides always sleep on their eventfd between records:
 * each round trip is two wake-ups. Returns 0 and the p50/p99 in ns. */
static int pingpong(int rounds, double *p50, double *p99)
{
    struct shm_link b;
    struct shm_worker_fds fds;
    if (shm_link_create_broker(&b, 1u << 16, &fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct shm_link w;
        if (shm_link_attach_worker(&w, &fds) != 0) _exit(10);
        for (int i = 0; i < rounds; i++) {
            const struct shm_rec *rec;
            const void *pl;
            while (shm_rx_peek(&w.rx, &rec, &pl) != 1) {
                if (shm_rx_prepare_wait(&w.rx) == 0) wait_efd(w.own_efd);
                shm_rx_end_wait(&w.rx);
                shm_efd_drain(w.own_efd);
            }
            uint64_t v;
            memcpy(&v, pl, 8);
            shm_rx_consume(&w.rx);
            shm_rx_release(&w.rx);
            if (shm_tx_write(&w.tx, PROTO_PING, 0, 0, &v, 8) != 0) _exit(11);
            shm_tx_publish(&w.tx);
        }
        _exit(0);
    }
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)rounds);
    int err = 0;
    for (int i = 0; i < rounds && !err; i++) {
        uint64_t v = (uint64_t)i, back = 0;
        double t0 = now_s();
        if (shm_tx_write(&b.tx, PROTO_PONG, 0, 0, &v, 8) != 0) err = 1;
        shm_tx_publish(&b.tx);
        struct shm_rec h;
        int rc;
        while ((rc = shm_rx_read_copy(&b.rx, &h, &back, 8)) == 0) {
            if (shm_rx_prepare_wait(&b.rx) == 0) wait_efd(b.own_efd);
            shm_rx_end_wait(&b.rx);
            shm_efd_drain(b.own_efd);
        }
        shm_rx_release(&b.rx);
        if (rc < 0 || back != v) err = 1;
        lat[i] = (uint64_t)((now_s() - t0) * 1e9);
    }
    int st;
    if (err) kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    qsort(lat, (size_t)rounds, sizeof lat[0], cmp_u64);
    *p50 = (double)lat[rounds / 2];
    *p99 = (double)lat[rounds * 99 / 100];
    free(lat);
    shm_link_destroy(&b);
    return err || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ? -1 : 0;
}

int main(void)
{
    int fail = 0;
    printf("shm ring benchmark (cross-process, fork; reader = broker's shm_rx_read_copy)\n");
    printf("%-34s %14s %10s %10s\n", "case", "records/s", "GB/s", "memcpy GB/s");

    const struct {
        uint32_t len;
        size_t ring;
        uint64_t count;
        const char *name;
    } runs[] = {
        {64, 256u << 10, 30000000, "64 B records, 256 KiB ring"},
        {16384, 1u << 20, 400000, "16 KiB records, 1 MiB ring"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        double mc = memcpy_gbps(runs[i].len, runs[i].ring, 0.3);
        struct tp_result r = throughput(runs[i].len, runs[i].ring, runs[i].count);
        double rps = (double)r.count / r.secs;
        double gbps = rps * runs[i].len / 1e9;
        printf("%-34s %14.0f %10.2f %10.2f%s\n", runs[i].name, rps, gbps, mc,
               r.errors    ? "  ERRORS"
               : r.limited ? "  (stopped at the time limit)"
                           : "");
        if (i == 0 && rps < 10e6) printf("  below target: 10 M records/s\n");
        if (i == 1 && gbps < 3.0) printf("  below target: 3 GB/s\n");
        fail |= r.errors != 0;
    }
    double big = memcpy_gbps(32u << 20, 64u << 20, 0.5);
    printf("%-34s %14s %10s %10.2f\n", "memcpy 32 MiB blocks (DRAM)", "-", "-", big);

    double p50 = 0, p99 = 0;
    int rc = pingpong(20000, &p50, &p99);
    printf("\neventfd wake-up round trip (ping-pong, both sides asleep), 20000 rounds:\n");
    printf("  p50 %.1f us   p99 %.1f us%s\n", p50 / 1000, p99 / 1000, rc ? "  ERRORS" : "");
    fail |= rc != 0;
    return fail ? 1 : 0;
}

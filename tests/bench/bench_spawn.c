/* Benchmark of worker start-up: the time from the broker's fork() to the
 * worker's READY record, i.e. exec, mapping and checking the rings, the whole
 * sandbox preparation (descriptors, parent binding, capabilities, namespaces,
 * rlimits), building the Lua state, loading and probing the seccomp filter.
 * It spawns the real worker exactly like broker/worker.c does (the four link
 * descriptors as fds 3..6, an empty environment, the same argv), reads the
 * READY record through the validating reader, then kills and reaps the worker.
 * Prints p50/p99 for workers with and without namespaces; the target is
 * p50 <= 5 ms.
 *
 *   build/bench_spawn [N [WORKER]]   N spawns per row (default 100); WORKER
 *                                    defaults to the worker next to this binary
 *
 * Layer: tests/bench, uses shm/ only. Build with -O2 to report numbers. */
#include "shm/proto.h"
#include "shm/ring.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (4u << 20) /* as `broker run` */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Spawns one worker and waits for READY. Returns the latency in ms, or a
 * negative value on failure (the message goes to stderr). */
static double spawn_once(const char *worker, int namespaces, uint8_t *buf)
{
    struct shm_link link;
    struct shm_worker_fds fds;
    if (shm_link_create_broker(&link, RING_BYTES, &fds) < 0) {
        fprintf(stderr, "bench_spawn: cannot create the link\n");
        return -1;
    }
    char a_pid[32];
    snprintf(a_pid, sizeof a_pid, "%d", (int)getpid());
    char *argv[] = {"worker", "--mem",        "67108864", "--cpu-ms",
                    "0",      "--broker-pid", a_pid,      namespaces ? NULL : "--no-namespaces",
                    NULL};
    char *envp[] = {NULL};
    pid_t parent = getpid();
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        shm_link_destroy(&link);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(120);
        int src[4] = {fds.region_b, fds.region_w, fds.efd_worker, fds.efd_broker};
        int tmp[4];
        for (int i = 0; i < 4; i++)
            tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 100);
        for (int i = 0; i < 4; i++)
            if (tmp[i] < 0 || dup2(tmp[i], 3 + i) < 0) _exit(121);
        syscall(SYS_close_range, 0, 2, 0);
        syscall(SYS_close_range, 7, ~0U, 0);
        execve(worker, argv, envp);
        _exit(122);
    }
    shm_link_close_regions(&link);
    double lat = -1;
    shm_rx_prepare_wait(&link.rx);
    for (;;) {
        struct shm_rec h;
        int rc = shm_rx_read_copy(&link.rx, &h, buf, link.rx.max_payload);
        if (rc == 1 && h.type == PROTO_READY) {
            lat = now_ms() - t0;
            break;
        }
        if (rc < 0) {
            fprintf(stderr, "bench_spawn: bad ring: %s\n", shm_strerror(rc));
            break;
        }
        if (rc == 1) continue;
        struct pollfd p = {.fd = link.own_efd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) {
            fprintf(stderr, "bench_spawn: no READY within 5 s\n");
            break;
        }
        shm_efd_drain(link.own_efd);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (lat < 0 && WIFEXITED(st))
        fprintf(stderr, "bench_spawn: the worker exited with status %d\n", WEXITSTATUS(st));
    shm_link_destroy(&link);
    return lat;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Value at quantile q of a sorted array (nearest rank). */
static double pct(const double *v, int n, double q)
{
    int i = (int)(q * n + 0.999999) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return v[i];
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    static char path[PATH_MAX];
    const char *worker = argc > 2 ? argv[2] : NULL;
    if (!worker) {
        ssize_t k = readlink("/proc/self/exe", path, sizeof path - 16);
        if (k <= 0) return fprintf(stderr, "bench_spawn: cannot find myself\n"), 1;
        path[k] = 0;
        char *slash = strrchr(path, '/');
        strcpy(slash ? slash + 1 : path, "worker");
        worker = path;
    }
    if (n < 1 || access(worker, X_OK) != 0) {
        fprintf(stderr, "usage: %s [N [WORKER]] (worker: %s)\n", argv[0], worker);
        return 2;
    }
    uint8_t *buf = malloc(1u << 20);
    double *lat = calloc((size_t)n, sizeof *lat);
    if (!buf || !lat) return 1;
    printf("worker spawn to READY (%d spawns per row; target p50 <= 5 ms)\n", n);
    printf("%-22s %9s %9s %9s %9s\n", "worker", "min", "p50", "p99", "max");
    int bad = 0;
    for (int ns = 1; ns >= 0; ns--) {
        spawn_once(worker, ns, buf); /* warm the page cache */
        for (int i = 0; i < n; i++) {
            lat[i] = spawn_once(worker, ns, buf);
            if (lat[i] < 0) {
                bad = 1;
                break;
            }
        }
        if (bad) break;
        qsort(lat, (size_t)n, sizeof *lat, cmp_dbl);
        printf("%-22s %6.2f ms %6.2f ms %6.2f ms %6.2f ms\n",
               ns ? "with namespaces" : "--no-namespaces", lat[0], pct(lat, n, 0.5),
               pct(lat, n, 0.99), lat[n - 1]);
    }
    free(buf);
    free(lat);
    return bad;
}

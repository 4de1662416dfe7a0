/* Benchmark of the seccomp filter's cost per allowed system call: a child
 * process times a handful of cheap allowed calls (raw syscall(), no vDSO)
 * before and after sbx_lockdown() loads the production filter, and the
 * difference per call is the filter's cost. Results travel back through a
 * shared anonymous mapping (the locked-down child may not write anywhere
 * else). Prints a small table; the median of several rounds is used so a busy
 * machine disturbs it less.
 *
 *   build/bench_seccomp [ITERATIONS]     default 50000 calls per measurement
 *
 * Layer: tests/bench, uses sandbox/ only. Build with -O2 to report numbers. */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <stdatomic.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 15

/* One measured call. */
struct probe {
    const char *name; /* label in the table */
    void (*fn)(void); /* makes the call once */
};

/* Shared between the parent and the two children. */
struct shared {
    double res[2][16][ROUNDS]; /* ns per call: [0] no filter, [1] filter */
    _Atomic int turn;          /* 0 idle, 1 child 0 measures, 2 child 1, 3 quit */
    _Atomic int ready;         /* children ready to measure (set up done) */
    _Atomic int failed;        /* a child's set-up failed */
};

static int g_efd;   /* eventfd on the allowed list (empty: read -> EAGAIN) */
static int g_futex; /* futex word nobody waits on */

static void p_clock(void)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
}
static void p_read_efd(void)
{
    uint64_t v;
    syscall(SYS_read, g_efd, &v, sizeof v); /* EAGAIN: empty, non-blocking */
}
static void p_write_efd(void)
{
    uint64_t v = 1, r;
    syscall(SYS_write, g_efd, &v, sizeof v);
    syscall(SYS_read, g_efd, &r, sizeof r);
}
static void p_futex(void)
{
    syscall(SYS_futex, &g_futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
static void p_mmap(void)
{
    void *p = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    syscall(SYS_munmap, p, 4096);
}
static void p_sigprocmask(void)
{
    uint64_t old;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &old, 8);
}

/* No system call: stores and loads only. A filtered task runs with the
 * speculative-store-bypass mitigation on by default, which can slow plain
 * user code too; this row shows whether it does on this machine. */
static void p_user(void)
{
    static volatile uint64_t buf[64];
    for (int i = 0; i < 64; i++)
        buf[i] = buf[(i + 7) & 63] + (uint64_t)i;
}

static const struct probe probes[] = {
    {"clock_gettime (raw)", p_clock},    {"read eventfd (EAGAIN)", p_read_efd},
    {"write+read eventfd", p_write_efd}, {"futex wake", p_futex},
    {"mmap+munmap 4 KiB", p_mmap},       {"rt_sigprocmask", p_sigprocmask},
    {"no syscall (64 st/ld)", p_user},
};
#define NPROBES (sizeof probes / sizeof probes[0])

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void measure(double out[][ROUNDS], long iters, int round)
{
    for (size_t i = 0; i < NPROBES; i++) {
        double t0 = now_ns();
        for (long k = 0; k < iters; k++)
            probes[i].fn();
        out[i][round] = (now_ns() - t0) / (double)iters;
    }
}

static double fastest(const double *v)
{
    double m = v[0];
    for (int i = 1; i < ROUNDS; i++)
        if (v[i] < m) m = v[i];
    return m;
}

static void fwait(_Atomic int *w, int val)
{
    syscall(SYS_futex, (int *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void fwake(_Atomic int *w)
{
    syscall(SYS_futex, (int *)w, FUTEX_WAKE, 8, NULL, NULL, 0);
}

/* Child `who` (0 no filter, 1 filter): set up, then measure on its turns. */
static void child(struct shared *sh, int who, long iters)
{
    g_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int other = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (g_efd < 0 || other < 0) {
        atomic_store(&sh->failed, 1);
        fwake(&sh->ready);
        _exit(2);
    }
    if (who == 1) {
        const int allowed[] = {g_efd, other}; /* two, like the worker's {5, 6} */
        char log[256];
        if (sbx_lockdown(allowed, 2, log, sizeof log) != 0) {
            atomic_store(&sh->failed, 1);
            fwake(&sh->ready);
            _exit(3);
        }
    }
    atomic_fetch_add(&sh->ready, 1);
    fwake(&sh->ready);
    for (int r = 0;;) {
        int t = atomic_load(&sh->turn);
        if (t == 3) break;
        if (t != who + 1) {
            fwait(&sh->turn, t);
            continue;
        }
        measure(sh->res[who], iters, r++);
        atomic_store(&sh->turn, 0);
        fwake(&sh->turn);
    }
    _exit(0);
}

/* Hands the turn to child `who` and waits until it is done. */
static void give_turn(struct shared *sh, int who)
{
    atomic_store(&sh->turn, who + 1);
    fwake(&sh->turn);
    int t;
    while ((t = atomic_load(&sh->turn)) != 0)
        fwait(&sh->turn, t);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 50000;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s [ITERATIONS]\n", argv[0]);
        return 2;
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return perror("mmap"), 1;
    memset(sh, 0, sizeof *sh);
    fflush(stdout);
    pid_t pids[2];
    for (int who = 0; who < 2; who++) {
        pids[who] = fork();
        if (pids[who] < 0) return perror("fork"), 1;
        if (pids[who] == 0) child(sh, who, iters);
    }
    int rd;
    while ((rd = atomic_load(&sh->ready)) < 2 && !atomic_load(&sh->failed))
        fwait(&sh->ready, rd);
    if (!atomic_load(&sh->failed))
        for (int r = 0; r < ROUNDS; r++) {
            give_turn(sh, 0);
            give_turn(sh, 1);
        }
    atomic_store(&sh->turn, 3);
    fwake(&sh->turn);
    int bad = atomic_load(&sh->failed);
    for (int who = 0; who < 2; who++) {
        int st;
        if (waitpid(pids[who], &st, 0) != pids[who] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad = 1;
    }
    if (bad) {
        fprintf(stderr, "bench_seccomp: a measuring child failed\n");
        return 1;
    }
    printf("seccomp filter cost per allowed system call (fastest of %d rounds of %ld calls)\n",
           ROUNDS, iters);
    printf("%-24s %12s %12s %12s\n", "call", "no filter", "filter", "cost/call");
    double costs[16];
    size_t nsys = 0;
    for (size_t i = 0; i < NPROBES; i++) {
        double b = fastest(sh->res[0][i]), a = fastest(sh->res[1][i]);
        /* write+read and mmap+munmap are two calls per iteration */
        int calls = (probes[i].fn == p_write_efd || probes[i].fn == p_mmap) ? 2 : 1;
        double d = (a - b) / calls;
        if (probes[i].fn != p_user) costs[nsys++] = d;
        printf("%-24s %9.1f ns %9.1f ns %9.1f ns\n", probes[i].name, b, a, d);
    }
    /* median over the rows: one noisy row (page faults in mmap) moves it less */
    for (size_t i = 1; i < nsys; i++)
        for (size_t j = i; j > 0 && costs[j] < costs[j - 1]; j--) {
            double t = costs[j];
            costs[j] = costs[j - 1];
            costs[j - 1] = t;
        }
    printf("%-24s %38.1f ns\n", "median cost per syscall", costs[nsys / 2]);
    return 0;
}

/* Component benchmark of the broker's worker and connection bookkeeping,
 * run inside a real broker core (the same objects `broker run` builds):
 *   - worker spawn-to-READY: brk_worker_spawn() until the READY record has
 *     been handled, p50/p99 over sequential spawns;
 *   - idle worker memory: PSS (and private bytes) of workers that sleep;
 *   - broker memory per idle connection, without and with compression,
 *     from the broker process' RSS before and after the connections open;
 *   - the most concurrent idle connections one broker holds here: workers
 *     that each open their share to tests/bench/bench_server and sleep.
 *
 * Layer: tests/bench; links build/libhost.a (broker/, shm/). It starts its
 * own bench_server (next to this binary) and workers (next to it as well).
 * Script output (the workers' print) comes back through our stdout, which
 * is a pipe while the loop runs, so "CONNECTED n" lines can be counted.
 * Usage: bench_broker [--spawns N] [--conns N] [--workers N] [--zconns N] */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "broker/addr.h"
#include "broker/broker.h"
#include "broker/dns.h"
#include "broker/policy.h"

/* What the loop is waiting for. */
struct waitfor {
    struct brk_worker *ready_w; /* stop when this worker is READY */
    int64_t ready_ns;           /* when it was */
    int connected_lines;        /* "CONNECTED" lines seen */
    int connected_want;         /* stop when this many were seen */
    int failed;                 /* a FAILED line was seen */
    char line[4096];            /* partial output line */
    size_t line_len;
};

static struct waitfor g_wait;
static brk_io_fn g_orig_efd; /* worker.c's eventfd handler */
static struct brk g_b;
static char g_dir[PATH_MAX]; /* directory of this binary */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Calls worker.c's handler, then notes when the awaited worker got READY. */
static void efd_hook(struct brk_loop *loop, struct brk_io *io, uint32_t ev)
{
    struct brk_worker *w = (struct brk_worker *)((char *)io - offsetof(struct brk_worker, efd_io));
    int was_starting = w->state == BRK_W_STARTING;
    g_orig_efd(loop, io, ev);
    if (was_starting && w == g_wait.ready_w && w->state == BRK_W_RUNNING) {
        g_wait.ready_ns = brk_now_ns();
        brk_loop_stop(loop);
    }
}

static void on_end(struct brk *b, struct brk_worker *w)
{
    (void)w;
    if (b->n_workers == 0) brk_loop_stop(b->loop);
}

/* Our stdout is a pipe while measuring: count the workers' report lines. */
static void on_out(struct brk_loop *loop, struct brk_io *io, uint32_t ev)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(io->fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (g_wait.line_len < sizeof g_wait.line - 1)
                    g_wait.line[g_wait.line_len++] = buf[i];
                continue;
            }
            g_wait.line[g_wait.line_len] = 0;
            if (strstr(g_wait.line, "CONNECTED")) g_wait.connected_lines++;
            if (strstr(g_wait.line, "FAILED")) {
                g_wait.failed = 1;
                fprintf(stderr, "bench_broker: %s\n", g_wait.line);
            }
            g_wait.line_len = 0;
        }
    }
    if (g_wait.connected_want && (g_wait.connected_lines >= g_wait.connected_want || g_wait.failed))
        brk_loop_stop(loop);
}

static void on_deadline(struct brk_loop *loop, struct brk_timer *t)
{
    brk_loop_stop(loop);
}

/* Runs the loop until something stops it or ms pass. */
static void run_for(int64_t ms)
{
    struct brk_timer t = {0};
    brk_timer_start(g_b.loop, &t, brk_now_ns() + ms * 1000000, on_deadline);
    brk_loop_run(g_b.loop);
    brk_timer_stop(g_b.loop, &t);
}

static struct brk_worker *spawn(const char *src)
{
    const char *err = NULL;
    struct brk_worker *w = brk_worker_spawn(&g_b, "bench.lua", src, strlen(src), &err);
    if (!w) {
        fprintf(stderr, "bench_broker: cannot spawn a worker: %s\n", err ? err : "?");
        exit(1);
    }
    if (!g_orig_efd) g_orig_efd = w->efd_io.fn;
    w->efd_io.fn = efd_hook;
    return w;
}

/* Ends every worker and waits for them. */
static void end_all(void)
{
    if (g_b.n_workers == 0) return;
    brk_workers_shutdown(&g_b, 1001);
    run_for(10000);
}

/* Sum of "Key:" (kB) in /proc/PID/smaps_rollup, in bytes. */
static long long rollup(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') v = atoll(line + kl + 1) * 1024;
    fclose(f);
    return v;
}

static pid_t start_server(int *port)
{
    int pfd[2];
    if (pipe(pfd) != 0) exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/bench_server", g_dir);
        execl(path, path, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[128];
    if (!f || !fgets(line, sizeof line, f) || sscanf(line, "LISTENING %d", port) != 1) {
        fprintf(stderr, "bench_broker: bench_server did not start\n");
        exit(1);
    }
    return pid;
}

/* Opens `conns` idle connections spread over `workers` workers; returns the
 * broker's RSS growth per connection (bytes) or -1. */
static double idle_conns(int port, int workers, int conns, int compression, int *held, double *secs)
{
    char src[1024];
    int per = conns / workers;
    snprintf(src, sizeof src,
             "local cs = {}\n"
             "for i = 1, %d do\n"
             "  local c, err = websocket.connect('ws://127.0.0.1:%d/idle?deflate=1', {compression "
             "= %d})\n"
             "  if not c then print('FAILED ' .. i .. ' ' .. tostring(err)) break end\n"
             "  cs[i] = c\n"
             "end\n"
             "print('CONNECTED ' .. #cs)\n"
             "time.sleep('600s')\n",
             per, port, compression);
    /* Let the allocator settle, then measure the baseline with the workers up. */
    long long before = rollup(getpid(), "Rss");
    int64_t t0 = brk_now_ns();
    memset(&g_wait, 0, sizeof g_wait);
    g_wait.connected_want = workers;
    for (int i = 0; i < workers; i++)
        spawn(src);
    run_for(120000);
    *secs = (double)(brk_now_ns() - t0) / 1e9;
    int total = 0;
    for (struct brk_worker *w = g_b.workers; w; w = w->next)
        total += (int)w->n_conns;
    *held = total;
    long long after = rollup(getpid(), "Rss");
    /* The workers' own bookkeeping (rings, buffers) is in the baseline of a
     * run with the same workers and no connections; subtract that. */
    end_all();
    long long base_workers = 0;
    {
        char s0[] = "print('CONNECTED 0')\ntime.sleep('600s')\n";
        long long b0 = rollup(getpid(), "Rss");
        memset(&g_wait, 0, sizeof g_wait);
        g_wait.connected_want = workers;
        for (int i = 0; i < workers; i++)
            spawn(s0);
        run_for(20000);
        base_workers = rollup(getpid(), "Rss") - b0;
        end_all();
    }
    if (total <= 0) return -1;
    return (double)(after - before - base_workers) / total;
}

int main(int argc, char **argv)
{
    int spawns = 30, conns = 10000, workers = 4, zconns = 1000;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(argv[i], "--spawns"))
            spawns = atoi(v), i++;
        else if (!strcmp(argv[i], "--conns"))
            conns = atoi(v), i++;
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(v), i++;
        else if (!strcmp(argv[i], "--zconns"))
            zconns = atoi(v), i++;
        else {
            fprintf(stderr, "usage: bench_broker [--spawns N] [--conns N] [--workers N] "
                            "[--zconns N]\n");
            return 64;
        }
    }
    if (spawns < 2) spawns = 2;
    if (workers < 1) workers = 1;
    ssize_t n = readlink("/proc/self/exe", g_dir, sizeof g_dir - 1);
    if (n <= 0) return 1;
    g_dir[n] = 0;
    char *slash = strrchr(g_dir, '/');
    if (slash) *slash = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    int port = 0;
    pid_t srv = start_server(&port);

    static struct pol_policy policy = POL_POLICY_INIT;
    char err[256], pat[64], worker[PATH_MAX + 16];
    snprintf(pat, sizeof pat, "ws://127.0.0.1:%d/*", port);
    if (pol_allow_url(&policy, pat, "bench", err, sizeof err) != 0) {
        fprintf(stderr, "bench_broker: policy: %s\n", err);
        return 1;
    }
    snprintf(worker, sizeof worker, "%s/worker", g_dir);
    g_b.cfg = (struct brk_config){.policy = &policy,
                                  .addr_allowed = BRK_ADDR_DEFAULT_MASK,
                                  .worker_path = worker,
                                  .worker_mem = 256u << 20,
                                  .ready_ms = 5000,
                                  .max_conns = 100000,
                                  .ring_bytes = 4u << 20,
                                  .quiet = 1};
    g_b.loop = brk_loop_new();
    g_b.dns = g_b.loop ? brk_dns_new(g_b.loop) : NULL;
    g_b.rdbuf_len = 128 * 1024;
    g_b.rdbuf = malloc(g_b.rdbuf_len);
    g_b.tls = SSL_CTX_new(TLS_client_method());
    if (!g_b.loop || !g_b.dns || !g_b.rdbuf || !g_b.tls) return 1;
    g_b.on_worker_end = on_end;

    /* Worker output goes through a pipe we watch. */
    int op[2];
    if (pipe2(op, O_NONBLOCK | O_CLOEXEC) != 0) return 1;
    fcntl(op[1], F_SETPIPE_SZ, 1 << 20);
    int saved_out = dup(1), saved_err = dup(2);
    fflush(stdout);
    dup2(op[1], 1);
    /* Workers' own complaints when they are shut down are noise here. */
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) dup2(devnull, 2);
    struct brk_io out_io = {.fd = op[0], .fn = on_out};
    brk_io_set(g_b.loop, &out_io, EPOLLIN);

    /* 1. spawn-to-READY, sequential, each worker ended before the next. */
    int64_t *lat = calloc((size_t)spawns, sizeof *lat);
    for (int i = 0; i < spawns; i++) {
        memset(&g_wait, 0, sizeof g_wait);
        int64_t t0 = brk_now_ns();
        g_wait.ready_w = spawn("time.sleep('600s')\n");
        run_for(10000);
        lat[i] = g_wait.ready_ns ? g_wait.ready_ns - t0 : -1;
        g_wait.ready_w = NULL;
        end_all();
    }
    qsort(lat, (size_t)spawns, sizeof *lat, cmp_i64);

    /* 2. idle worker memory: 8 sleeping workers side by side. */
    enum { IDLE = 8 };
    long long pss[IDLE], priv[IDLE];
    int nidle = 0;
    memset(&g_wait, 0, sizeof g_wait);
    g_wait.connected_want = IDLE;
    for (int i = 0; i < IDLE; i++)
        spawn("collectgarbage()\nprint('CONNECTED idle')\ntime.sleep('600s')\n");
    run_for(10000);
    run_for(100); /* let them settle into their sleep */
    for (struct brk_worker *w = g_b.workers; w && nidle < IDLE; w = w->next) {
        pss[nidle] = rollup(w->pid, "Pss");
        priv[nidle] = rollup(w->pid, "Private_Dirty") + rollup(w->pid, "Private_Clean");
        nidle++;
    }
    end_all();
    qsort(pss, (size_t)nidle, sizeof *pss, cmp_i64);
    qsort(priv, (size_t)nidle, sizeof *priv, cmp_i64);

    /* 3. idle connections: plain, then with compression. */
    int held = 0, zheld = 0;
    double secs = 0, zsecs = 0;
    double per = idle_conns(port, workers, conns, 0, &held, &secs);
    int zw = workers < 2 ? workers : 2;
    double zper = zconns ? idle_conns(port, zw, zconns, 1, &zheld, &zsecs) : -1;

    fflush(stdout);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    if (devnull >= 0) close(devnull);
    brk_io_stop(g_b.loop, &out_io);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);

    printf("broker components (bench_broker, real broker core and workers)\n");
    printf("worker spawn-to-READY (%d sequential): p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", spawns,
           (double)lat[spawns / 2] / 1e6, (double)lat[(spawns * 99) / 100] / 1e6,
           (double)lat[spawns - 1] / 1e6);
    if (nidle)
        printf("idle worker memory (%d sleeping side by side): PSS median %.2f MiB, "
               "private %.2f MiB\n",
               nidle, (double)pss[nidle / 2] / 1048576.0, (double)priv[nidle / 2] / 1048576.0);
    printf("idle connections held: %d of %d across %d workers (opened in %.1f s)\n", held, conns,
           workers, secs);
    if (per >= 0) printf("broker memory per idle connection: %.1f KiB\n", per / 1024.0);
    if (zper >= 0)
        printf("broker memory per idle connection with compression (context takeover): "
               "%.1f KiB (%d connections)\n",
               zper / 1024.0, zheld);
    return held == conns ? 0 : 1;
}

/* The worker executable: started only by the broker, with the link's four
 * descriptors as fds 3..6 (region B, region W, the worker's eventfd, the
 * broker's eventfd), an empty environment and nothing else.
 *
 * Start-up order, before any script byte is read: map and verify the rings;
 * sandbox preparation (close every other fd, die with the broker, not
 * dumpable, rlimits, namespaces where possible); the Lua state with its
 * restricted environment; no_new_privs and the seccomp filter with a
 * self-probe; then READY. Only then does the broker send the script.
 *
 * Layer: worker/. Uses shm/, sandbox/ and lua/; never libwebsockets.
 *
 * Exit status: the script's (0 ok, 1 error, 2 memory cap, 3 CPU budget);
 * 10+ for start-up failures, which the broker reports as a crash. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/bridge.h"
#include "lua/rt.h"
#include "sandbox/sandbox.h"
#include "shm/proto.h"
#include "shm/ring.h"

#define EXIT_USAGE     10
#define EXIT_LINK      11
#define EXIT_SANDBOX   12
#define EXIT_RUNTIME   13
#define EXIT_NO_SCRIPT 14

#if defined(__SANITIZE_ADDRESS__)
/* ASan builds only (the worker starts with an empty environment, so
 * ASAN_OPTIONS cannot reach it): no leak check at exit. LeakSanitizer's
 * exit-time scan stops the world with clone/ptrace and sigaltstack, which the
 * seccomp filter rightly kills; the worker ends with _exit and never frees
 * its Lua state anyway. A sanitizer report inside the worker still ends it
 * (its write to the closed fd 2 dies by SIGSYS), which the tests count as a
 * failure. Leaks are checked in the broker and the unit tests. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}
#endif

/* As the init of a PID namespace the worker would ignore SIGXCPU (the
 * kernel drops default-action signals to a namespace init), so RLIMIT_CPU's
 * soft limit gets a handler that ends the process the same way the default
 * action would have been reported: exit status SIGXCPU, no EXIT record. */
static void on_sigxcpu(int sig)
{
    _exit(sig);
}

static uint64_t num_arg(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == 0 || *end != 0) _exit(EXIT_USAGE);
    return v;
}

int main(int argc, char **argv)
{
    uint64_t mem = 64u << 20, cpu_ms = 0;
    pid_t broker = 0;
    int try_ns = 1;
    int pidns = 0; /* started as the init of its own PID namespace */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mem") && i + 1 < argc)
            mem = num_arg(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-ms") && i + 1 < argc)
            cpu_ms = num_arg(argv[++i]);
        else if (!strcmp(argv[i], "--broker-pid") && i + 1 < argc)
            broker = (pid_t)num_arg(argv[++i]);
        else if (!strcmp(argv[i], "--no-namespaces"))
            try_ns = 0;
        else if (!strcmp(argv[i], "--pid-namespace"))
            pidns = 1;
        else
            _exit(EXIT_USAGE);
    }
    if (broker <= 0) _exit(EXIT_USAGE);

    struct shm_link link;
    struct shm_worker_fds fds = {.region_b = 3, .region_w = 4, .efd_worker = 5, .efd_broker = 6};
    if (shm_link_attach_worker(&link, &fds) != 0) _exit(EXIT_LINK);

    const int keep[] = {5, 6};
    char log[512] = "", lock_log[256] = "";
    uint64_t as_cap = 0;
#if !defined(__SANITIZE_ADDRESS__)
    as_cap = mem * 2 + (512u << 20); /* Lua heap, rings, libraries and slack */
#endif
    struct sbx_opts so = {.keep_fds = keep,
                          .n_keep = 2,
                          .broker_pid = broker,
                          .in_pid_ns = pidns,
                          .mem_bytes = as_cap,
                          .cpu_seconds = cpu_ms ? (cpu_ms + 999) / 1000 + 1 : 0,
                          .try_namespaces = try_ns};
    if (pidns) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigxcpu;
        sigaction(SIGXCPU, &sa, NULL);
    }
    if (sbx_prepare(&so, log, sizeof log) != 0) _exit(EXIT_SANDBOX);

    struct rt_config cfg = {.mem_limit = mem, .cpu_limit_ms = cpu_ms};
    struct rt *rt = rt_new(&cfg);
    if (!rt) _exit(EXIT_RUNTIME);
    struct rt_bridge *br = rt_bridge_new(rt, &link);
    if (!br) _exit(EXIT_RUNTIME);

    if (sbx_lockdown(keep, 2, lock_log, sizeof lock_log) != 0)
        _exit(EXIT_SANDBOX); /* no script runs without seccomp */

    char ready[800];
    snprintf(ready, sizeof ready, "%s; %s", log, lock_log);
    if (rt_bridge_send_ready(br, ready) != 0) _exit(EXIT_LINK);

    char *name = NULL, *src = NULL;
    size_t len = 0;
    if (rt_bridge_wait_script(br, &name, &src, &len) != 0) _exit(EXIT_NO_SCRIPT);

    /* "@name" makes Lua print positions as name:line. */
    char chunk[300];
    snprintf(chunk, sizeof chunk, "@%s", name);
    int st = rt_run(rt, chunk, src, len);
    /* A run ended by the broker's SHUTDOWN (drain, stop) is not a script
     * error: the script was asked to stop and did. */
    if (st == RT_ERROR && rt_bridge_shutdown_seen(br)) st = RT_OK;
    const char *msg = st == RT_OK ? "" : rt_last_error(rt);
    rt_bridge_send_exit(br, st, msg ? msg : "");
    /* No cleanup: the process ends here and the broker reaps it. */
    _exit(st);
}

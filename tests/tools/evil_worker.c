/* A hostile worker, standing in for a Lua VM that a script has taken over: it
 * enters the sandbox exactly like the real worker (sbx_prepare with
 * namespaces, then sbx_lockdown with the production filter) and then tries one
 * forbidden thing directly in C with a raw system call.
 *
 * Standalone (no broker):
 *   build/evil_worker list        names of the attempts
 *   build/evil_worker NAME        run one attempt
 *   build/evil_worker ok          the allowed operations must all work
 *
 * Through the real broker (`build/broker run --worker build/evil_worker
 * SCRIPT`): started with the worker's argv (--mem, --cpu-ms, --broker-pid,
 * [--no-namespaces]) and the link descriptors 3..6, it maps the rings, enters
 * the sandbox with the production options and descriptor list {5, 6}, sends
 * READY, receives the script and runs the attempt the script names with a line
 * `evil: NAME` (or `ok`). Progress goes to the broker as LOG records. An
 * errno answer ends with EXIT status 1 ("survived: ..."), "ok" with EXIT 0,
 * and a forbidden call that succeeds with EXIT 0 and a "HOLE:" line, so a
 * test that expects the broker's "seccomp violation" (exit 4) fails.
 * Two extra first options, for wrapper scripts given as --worker:
 *   evil_worker --stall WORKER-ARGS...   sandbox on, but never READY (the
 *                                       broker must kill it: not ready in time)
 *   evil_worker --deny-seccomp PATH WORKER-ARGS...
 *                                       installs a filter that makes seccomp()
 *                                       and prctl(PR_SET_SECCOMP) fail with
 *                                       EPERM, then execs PATH (the real
 *                                       worker) with WORKER-ARGS: its lockdown
 *                                       must fail and no script may run.
 *   evil_worker --deny-unshare PATH WORKER-ARGS...
 *                                       the same with unshare() failing with
 *                                       EPERM, as where unprivileged user
 *                                       namespaces are off: the worker must say
 *                                       so and run with the other layers.
 *
 * Standalone outcome (for scripts): killed by SIGSYS = the filter killed it
 * (expected for everything but the errno-mapped calls); exit 3 = the call
 * failed with an errno (printed; expected for open/openat/rseq); exit 4 = the
 * forbidden call SUCCEEDED (a hole in the sandbox); exit 2 = the sandbox could
 * not be set up; exit 0 = "ok" passed; exit 1 = usage or an allowed operation
 * failed. Output goes to stdout (fd 1 is on the allowed list in this mode; the
 * "write_other" attempt writes to fd 2, which is kept open but not allowed).
 * Send stdout to a pipe or a terminal, not to a regular file: RLIMIT_FSIZE 0
 * ends any write that would grow a file with SIGXFSZ.
 *
 * Layer: tests/tools. Links libhost.a for sandbox/ and shm/; no Lua, no
 * libwebsockets. */
#include "sandbox/sandbox.h"
#include "shm/proto.h"
#include "shm/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Descriptors and memory prepared before the lockdown. */
struct evil_env {
    int efd;    /* eventfd on the allowed list */
    int memfd;  /* open memfd, not allowed: file-backed mmap / read target */
    void *page; /* an anonymous read-write page for mprotect attempts */
};

static struct evil_env env;

/* Worker mode: the attached broker link (NULL when standalone). */
static struct shm_link *g_link;

/* Prints with one raw write (stdio could fstat the descriptor first), or, in
 * worker mode, sends the text as a LOG record (no system call but the
 * eventfd write that wakes the broker). */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= sizeof buf) k = sizeof buf - 1;
    if (g_link) {
        if (shm_tx_write(&g_link->tx, PROTO_LOG, 0, 0, buf, (uint32_t)k) == 0)
            shm_tx_publish(&g_link->tx);
        return;
    }
    syscall(SYS_write, 1, buf, (size_t)k);
}

static long do_socket(void)
{
    return syscall(SYS_socket, 2 /* AF_INET */, 1 /* SOCK_STREAM */, 0);
}
static long do_connect(void)
{
    return syscall(SYS_connect, 0, NULL, 0);
}
static long do_open(void)
{
    return syscall(SYS_open, "/etc/passwd", O_RDONLY);
}
static long do_openat(void)
{
    return syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
}
static long do_execve(void)
{
    char *argv[] = {(char *)"/bin/true", NULL};
    char *envp[] = {NULL};
    return syscall(SYS_execve, "/bin/true", argv, envp);
}
static long do_fork(void)
{
    long r = syscall(SYS_fork);
    if (r == 0) syscall(SYS_exit_group, 5);
    return r;
}
static long do_vfork(void)
{
    long r = syscall(SYS_vfork);
    if (r == 0) syscall(SYS_exit, 5);
    return r;
}
static long do_clone(void)
{
    long r = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    if (r == 0) syscall(SYS_exit_group, 5);
    return r;
}
static long do_clone3(void)
{
    uint64_t args[11];
    memset(args, 0, sizeof args);
    args[4] = SIGCHLD; /* exit_signal */
    long r = syscall(SYS_clone3, args, sizeof args);
    if (r == 0) syscall(SYS_exit_group, 5);
    return r;
}
static long do_ptrace(void)
{
    return syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
}
static long do_vm_readv(void)
{
    return syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0);
}
static long do_vm_writev(void)
{
    return syscall(SYS_process_vm_writev, 1, NULL, 0, NULL, 0, 0);
}
static long do_kill(void)
{
    return syscall(SYS_kill, 1, 0);
}
static long do_tgkill(void)
{
    return syscall(SYS_tgkill, 1, 1, 0);
}
static long do_tkill(void)
{
    return syscall(SYS_tkill, 1, 0);
}
static long do_uring_setup(void)
{
    uint8_t params[120];
    memset(params, 0, sizeof params);
    return syscall(SYS_io_uring_setup, 1, params);
}
static long do_uring_enter(void)
{
    return syscall(SYS_io_uring_enter, 0, 0, 0, 0, NULL, 0);
}
static long do_uring_register(void)
{
    return syscall(SYS_io_uring_register, 0, 0, NULL, 0);
}
static long do_memfd(void)
{
    return syscall(SYS_memfd_create, "evil", 0);
}
static long do_bpf(void)
{
    return syscall(SYS_bpf, 0, NULL, 0);
}
static long do_userfaultfd(void)
{
    return syscall(SYS_userfaultfd, 0);
}
static long do_perf(void)
{
    return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
}
static long do_ioctl(void)
{
    int n = 0;
    return syscall(SYS_ioctl, env.efd, 0x541B /* FIONREAD */, &n);
}
static long do_prctl(void)
{
    return syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
}
static long do_unshare(void)
{
    return syscall(SYS_unshare, 0);
}
static long do_setns(void)
{
    return syscall(SYS_setns, -1, 0);
}
static long do_mount(void)
{
    return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
}
static long do_seccomp(void)
{
    uint32_t action = 0;
    return syscall(SYS_seccomp, 2 /* SECCOMP_GET_ACTION_AVAIL */, 0, &action);
}
static long do_rseq(void)
{
    return syscall(SYS_rseq, NULL, 0, 0, 0);
}
static long do_prlimit(void)
{
    uint64_t old[2];
    return syscall(SYS_prlimit64, 0, 7 /* RLIMIT_NOFILE */, NULL, old);
}
static long do_mmap_exec(void)
{
    return syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
static long do_mmap_file(void)
{
    return syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_SHARED, env.memfd, 0);
}
static long do_mprotect_exec(void)
{
    return syscall(SYS_mprotect, env.page, 4096, PROT_READ | PROT_EXEC);
}
static long do_write_other(void)
{
    return syscall(SYS_write, 2, "x", 1);
}
static long do_read_other(void)
{
    char c;
    return syscall(SYS_read, env.memfd, &c, 1);
}
static long do_write_highfd(void)
{
    uint64_t one = 1;
    return syscall(SYS_write, (1L << 32) | env.efd, &one, sizeof one);
}
static long do_x32(void)
{
    return syscall(0x40000000L | SYS_getpid);
}
static long do_i386(void)
{
    long r = 20; /* getpid in the i386 table */
    __asm__ volatile("int $0x80" : "+a"(r) : : "memory");
    return r;
}

/* One attempt: name, raw call, errno the filter answers with (0 = kill). */
struct attempt {
    const char *name;
    long (*fn)(void);
    int want_errno;
};

static const struct attempt attempts[] = {
    {"socket", do_socket, 0},
    {"connect", do_connect, 0},
    {"open", do_open, SBX_OPEN_ERRNO},
    {"openat", do_openat, SBX_OPEN_ERRNO},
    {"execve", do_execve, 0},
    {"fork", do_fork, 0},
    {"vfork", do_vfork, 0},
    {"clone", do_clone, 0},
    {"clone3", do_clone3, 0},
    {"ptrace", do_ptrace, 0},
    {"process_vm_readv", do_vm_readv, 0},
    {"process_vm_writev", do_vm_writev, 0},
    {"kill", do_kill, 0},
    {"tgkill", do_tgkill, 0},
    {"tkill", do_tkill, 0},
    {"io_uring_setup", do_uring_setup, 0},
    {"io_uring_enter", do_uring_enter, 0},
    {"io_uring_register", do_uring_register, 0},
    {"memfd_create", do_memfd, 0},
    {"bpf", do_bpf, 0},
    {"userfaultfd", do_userfaultfd, 0},
    {"perf_event_open", do_perf, 0},
    {"ioctl", do_ioctl, 0},
    {"prctl", do_prctl, 0},
    {"unshare", do_unshare, 0},
    {"setns", do_setns, 0},
    {"mount", do_mount, 0},
    {"seccomp", do_seccomp, 0},
    {"rseq", do_rseq, SBX_RSEQ_ERRNO},
    {"prlimit64", do_prlimit, 0},
    {"mmap_exec", do_mmap_exec, 0},
    {"mmap_file", do_mmap_file, 0},
    {"mprotect_exec", do_mprotect_exec, 0},
    {"write_other", do_write_other, 0},
    {"read_other", do_read_other, 0},
    {"write_highfd", do_write_highfd, 0},
    {"x32", do_x32, 0},
    {"i386", do_i386, 0},
};

/* The allowed operations, all through raw system calls except malloc. */
static int run_ok(void)
{
    uint64_t v = 7;
    if (syscall(SYS_write, env.efd, &v, sizeof v) != sizeof v)
        return say("ok: eventfd write failed\n"), 1;
    v = 0;
    /* >= 7: in worker mode the broker may signal the same eventfd */
    if (syscall(SYS_read, env.efd, &v, sizeof v) != sizeof v || v < 7)
        return say("ok: eventfd read failed\n"), 1;
    struct timespec ts;
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
        return say("ok: clock_gettime failed\n"), 1;
    void *p = (void *)syscall(SYS_mmap, NULL, 1 << 20, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return say("ok: anonymous mmap failed\n"), 1;
    memset(p, 1, 1 << 20);
    syscall(SYS_munmap, p, 1 << 20);
    char *big = malloc(100u << 20);
    if (!big) return say("ok: malloc(100 MB) failed\n"), 1;
    for (size_t i = 0; i < (100u << 20); i += 4096)
        big[i] = (char)i;
    free(big);
    int word = 0;
    if (syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) < 0)
        return say("ok: futex wake failed\n"), 1;
    struct pollfd pfd = {.fd = env.efd, .events = POLLIN};
    struct timespec to = {0, 1000000};
    if (syscall(SYS_ppoll, &pfd, 1, &to, NULL, 8) < 0) return say("ok: ppoll failed\n"), 1;
    say("ok: eventfd, clock_gettime, mmap, malloc 100 MB, futex, ppoll all work\n");
    return 0;
}

static const struct attempt *find_attempt(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        if (strlen(attempts[i].name) == len && memcmp(attempts[i].name, name, len) == 0)
            return &attempts[i];
    return NULL;
}

/* Makes the attempt; returns the standalone exit status (3 errno, 4 hole). */
static int make_attempt(const struct attempt *a)
{
    say("attempt: %s\n", a->name);
    errno = 0;
    long r = a->fn();
    int e = errno;
    if (r == -1) {
        say("survived: %s failed with errno %d (%s)%s\n", a->name, e, strerror(e),
            e == a->want_errno ? ", the mapped errno" : ", NOT the mapped errno");
        return 3;
    }
    say("HOLE: %s succeeded (returned %ld)\n", a->name, r);
    return 4;
}

/* ---- worker mode ---- */

/* Sends EXIT (status, message) and publishes. */
static void send_exit(int status, const char *msg)
{
    struct {
        struct proto_exit ex;
        char text[200];
    } rec;
    memset(&rec, 0, sizeof rec);
    rec.ex.status = status;
    size_t n = strlen(msg);
    if (n > sizeof rec.text) n = sizeof rec.text;
    memcpy(rec.text, msg, n);
    if (shm_tx_write(&g_link->tx, PROTO_EXIT, 0, 0, &rec, (uint32_t)(sizeof rec.ex + n)) == 0)
        shm_tx_publish(&g_link->tx);
}

/* Sleeps on the worker's eventfd until the broker signals (or 1 s passes). */
static void wait_efd(void)
{
    struct pollfd pfd = {.fd = g_link->own_efd, .events = POLLIN};
    struct timespec to = {1, 0};
    syscall(SYS_ppoll, &pfd, 1, &to, NULL, 8);
    shm_efd_drain(g_link->own_efd);
}

/* Receives the whole SCRIPT record sequence into r (u32 name length, name,
 * source). Returns 0, or -1 on SHUTDOWN or a broken link. */
static int recv_script(struct shm_reasm *r)
{
    struct shm_rx *rx = &g_link->rx;
    for (;;) {
        const struct shm_rec *h;
        const void *p;
        int rc = shm_rx_peek(rx, &h, &p);
        if (rc < 0) return -1;
        if (rc == 0) {
            shm_rx_release(rx);
            rc = shm_rx_prepare_wait(rx);
            if (rc < 0) return -1;
            if (rc == 0) wait_efd();
            shm_rx_end_wait(rx);
            continue;
        }
        if (h->type == PROTO_SHUTDOWN) return -1;
        int done = 0;
        if (h->type == PROTO_SCRIPT) {
            rc = shm_reasm_feed(r, h, p);
            if (rc < 0) return -1;
            done = rc == 1;
        }
        shm_rx_consume(rx);
        if (done) {
            shm_rx_release(rx);
            return 0;
        }
    }
}

/* Finds "evil: NAME" (or "evil:NAME") in the script text; "ok" selects the
 * allowed-operations check. Returns 0 and the name span, or -1. */
static int parse_attempt(const char *src, size_t len, const char **name, size_t *nlen)
{
    for (size_t i = 0; i + 5 <= len; i++) {
        if (memcmp(src + i, "evil:", 5) != 0) continue;
        size_t j = i + 5;
        while (j < len && (src[j] == ' ' || src[j] == '\t'))
            j++;
        size_t k = j;
        while (k < len && (src[k] == '_' || (src[k] >= 'a' && src[k] <= 'z') ||
                           (src[k] >= '0' && src[k] <= '9')))
            k++;
        if (k == j) return -1;
        *name = src + j;
        *nlen = k - j;
        return 0;
    }
    return -1;
}

static uint64_t num_arg(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == 0 || *end != 0) _exit(10);
    return v;
}

/* The worker protocol (see worker/main.c): same argv, same descriptors, same
 * sandbox options and filter descriptor list as the real worker, plus one
 * memfd kept open as the target of the read/mmap attempts. stall = never
 * send READY. Exit codes as worker/main.c: 10+ for start-up failures. */
static int worker_mode(int argc, char **argv, int stall)
{
    uint64_t mem = 64u << 20, cpu_ms = 0;
    pid_t broker = 0;
    int try_ns = 1, pidns = 0;
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
            _exit(10);
    }
    if (broker <= 0) _exit(10);
    static struct shm_link link;
    struct shm_worker_fds fds = {.region_b = 3, .region_w = 4, .efd_worker = 5, .efd_broker = 6};
    if (shm_link_attach_worker(&link, &fds) != 0) _exit(11);
    env.efd = link.own_efd;
    env.memfd = (int)syscall(SYS_memfd_create, "evil-target", 0);
    env.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (env.memfd < 0 || env.page == MAP_FAILED || ftruncate(env.memfd, 4096) != 0) _exit(11);

    uint64_t as_cap = 0; /* as worker/main.c: ASan reserves terabytes of address space */
#if !defined(__SANITIZE_ADDRESS__)
    as_cap = mem * 2 + (512u << 20);
#else
    (void)mem;
#endif
    const int keep[] = {5, 6, env.memfd};
    const int allowed[] = {5, 6}; /* the production list */
    char log[512] = "", lock_log[256] = "";
    struct sbx_opts so = {.keep_fds = keep,
                          .n_keep = 3,
                          .broker_pid = broker,
                          .mem_bytes = as_cap,
                          .cpu_seconds = cpu_ms ? (cpu_ms + 999) / 1000 + 1 : 0,
                          .try_namespaces = try_ns,
                          .in_pid_ns = pidns};
    if (sbx_prepare(&so, log, sizeof log) != 0) _exit(12);
    if (sbx_lockdown(allowed, 2, lock_log, sizeof lock_log) != 0) _exit(12);
    g_link = &link;
    if (stall) /* locked down, but never READY: the broker's timer must act */
        for (;;)
            wait_efd();
    char ready[800];
    int n = snprintf(ready, sizeof ready, "EVIL WORKER: %s; %s", log, lock_log);
    if (n < 0 || (size_t)n >= sizeof ready) n = (int)strlen(ready);
    if (shm_tx_write(&link.tx, PROTO_READY, 0, 0, ready, (uint32_t)n) != 0) _exit(11);
    shm_tx_publish(&link.tx);

    struct shm_reasm r;
    shm_reasm_init(&r, 1u << 20);
    if (recv_script(&r) != 0) _exit(14);
    uint32_t name_len;
    if (r.len < 4) _exit(14);
    memcpy(&name_len, r.buf, 4);
    if (name_len > r.len - 4) _exit(14);
    const char *src = (const char *)r.buf + 4 + name_len;
    size_t src_len = r.len - 4 - name_len;
    const char *an;
    size_t alen;
    if (parse_attempt(src, src_len, &an, &alen) != 0) {
        send_exit(PROTO_EXIT_ERROR, "evil_worker: the script names no attempt (evil: NAME)");
        _exit(1);
    }
    if (alen == 2 && memcmp(an, "ok", 2) == 0) {
        int st = run_ok();
        send_exit(st ? PROTO_EXIT_ERROR : PROTO_EXIT_OK, st ? "allowed operation failed" : "");
        _exit(st);
    }
    const struct attempt *a = find_attempt(an, alen);
    if (!a) {
        send_exit(PROTO_EXIT_ERROR, "evil_worker: unknown attempt");
        _exit(1);
    }
    int st = make_attempt(a);
    if (st == 3) {
        send_exit(PROTO_EXIT_ERROR, "survived: the call failed with an errno");
        _exit(1);
    }
    send_exit(PROTO_EXIT_OK, "HOLE: a forbidden call succeeded");
    _exit(0);
}

/* Wrapper modes: a filter (allow by default) that makes every way to install
 * a seccomp filter fail with EPERM (deny_ns 0: the real worker's lockdown must
 * then fail so that no script runs), or unshare() (deny_ns 1: the kernel
 * "refuses" namespaces), then exec the real worker. */
static int deny_exec(int argc, char **argv, int deny_ns)
{
    if (argc < 1) return 10;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return 10;
    int rc;
    if (deny_ns) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 0);
    } else {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(seccomp), 0);
        if (rc == 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1,
                                  SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP));
    }
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) return 10;
    char *const envp[] = {NULL};
    execve(argv[0], argv, envp);
    return 10;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--deny-seccomp")) return deny_exec(argc - 2, argv + 2, 0);
    if (argc >= 2 && !strcmp(argv[1], "--deny-unshare")) return deny_exec(argc - 2, argv + 2, 1);
    if (argc >= 2 && !strcmp(argv[1], "--stall")) return worker_mode(argc - 1, argv + 1, 1);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--broker-pid")) return worker_mode(argc, argv, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s list|ok|ATTEMPT\n", argv[0]);
        return 1;
    }
    size_t na = sizeof attempts / sizeof attempts[0];
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < na; i++)
            printf("%s\n", attempts[i].name);
        return 0;
    }
    const struct attempt *a = find_attempt(argv[1], strlen(argv[1]));
    if (!a && strcmp(argv[1], "ok") != 0) {
        fprintf(stderr, "evil_worker: unknown attempt '%s' (try: list)\n", argv[1]);
        return 1;
    }
    env.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    env.memfd = (int)syscall(SYS_memfd_create, "evil-target", 0);
    env.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (env.efd < 0 || env.memfd < 0 || env.page == MAP_FAILED || ftruncate(env.memfd, 4096)) {
        perror("evil_worker: setup");
        return 2;
    }
    alarm(10);
    int keep[] = {1, 2, env.efd, env.memfd};
    struct sbx_opts o = {.keep_fds = keep,
                         .n_keep = 4,
                         .broker_pid = getppid(),
                         .cpu_seconds = 10,
                         .try_namespaces = 1};
    char log[512];
    fflush(stdout);
    int rc = sbx_prepare(&o, log, sizeof log);
    say("prepare: %s (rc %d)\n", log, rc);
    if (rc != 0) return 2;
    int allowed[] = {1, env.efd};
    rc = sbx_lockdown(allowed, 2, log, sizeof log);
    say("lockdown: %s (rc %d)\n", log, rc);
    if (rc != 0) return 2;
    if (!a) return run_ok();
    return make_attempt(a);
}

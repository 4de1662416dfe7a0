/* A hostile worker: enters the sandbox exactly like the real worker
 * (sbx_prepare with namespaces, then sbx_lockdown with the production filter)
 * and then tries one forbidden thing named by argv[1], directly in C with a
 * raw system call.
 *
 *   build/evil_worker list        names of the attempts
 *   build/evil_worker NAME        run one attempt
 *   build/evil_worker ok          the allowed operations must all work
 *
 * Outcome (for scripts): killed by SIGSYS = the filter killed it (expected for
 * everything but the errno-mapped calls); exit 3 = the call failed with an
 * errno (printed; expected for open/openat/rseq); exit 4 = the forbidden call
 * SUCCEEDED (a hole in the sandbox); exit 2 = the sandbox could not be set
 * up; exit 0 = "ok" passed; exit 1 = usage or an allowed operation failed.
 * Output goes to stdout (fd 1 is on the allowed list for this tool; the
 * "write_other" attempt writes to fd 2, which is kept open but not allowed).
 * Send stdout to a pipe or a terminal, not to a regular file: RLIMIT_FSIZE 0
 * ends any write that would grow a file with SIGXFSZ.
 *
 * Layer: tests/tools. Links libhost.a for sandbox/; no Lua, no libwebsockets. */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
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

/* Prints with one raw write (stdio could fstat the descriptor first). */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= sizeof buf) k = sizeof buf - 1;
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
    if (syscall(SYS_read, env.efd, &v, sizeof v) != sizeof v || v != 7)
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
    if (syscall(SYS_ppoll, &pfd, 1, &to, NULL, 8) != 0)
        return say("ok: ppoll did not time out\n"), 1;
    say("ok: eventfd, clock_gettime, mmap, malloc 100 MB, futex, ppoll all work\n");
    return 0;
}

int main(int argc, char **argv)
{
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
    const struct attempt *a = NULL;
    for (size_t i = 0; i < na; i++)
        if (strcmp(argv[1], attempts[i].name) == 0) a = &attempts[i];
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

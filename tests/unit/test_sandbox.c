/* Unit tests for sandbox/: the production seccomp filter (a syscall matrix
 * run in forked children, each loading the filter through sbx_lockdown and
 * making one raw system call), the golden export of the filter, and the
 * start-up steps of sbx_prepare (descriptor hygiene, parent check, parent
 * death signal, rlimits, /proc view of a locked-down child).
 *
 * Layer: tests/unit. Uses only sandbox/sandbox.h, libseccomp and CUnit.
 *
 * Children never return into CUnit: they end with _exit() (no atexit, no
 * LeakSanitizer, which would need system calls the filter forbids). After the
 * lockdown they make raw system calls only, except the malloc test, which is
 * the point of that test. Every child arms alarm() before the lockdown, so a
 * hang shows up as SIGALRM instead of a stuck suite. */
#include "sandbox/sandbox.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

#define GOLDEN_PATH "sandbox/seccomp.golden.pfc"

/* Child exit codes (the filter's kills show as WTERMSIG == SIGSYS). */
#define CH_SUCCESS      4  /* the call returned something other than -1 */
#define CH_ERRNO_BASE   10 /* the call returned -1: exit code 10 + errno */
#define CH_SETUP_FAILED 2  /* sbx_lockdown or the environment failed */

/* What each child has before its lockdown. */
struct tenv {
    int efd_a, efd_b; /* eventfds on the allowed list */
    int memfd;        /* an open memfd of 4 KiB, not on the list */
    void *page;       /* an anonymous read-write page */
};

static struct tenv te;

/* ---- the calls ---- */

static long c_socket(void)
{
    return syscall(SYS_socket, 2, 1, 0);
}
static long c_connect(void)
{
    return syscall(SYS_connect, 0, NULL, 0);
}
static long c_open(void)
{
    return syscall(SYS_open, "/etc/passwd", O_RDONLY);
}
static long c_openat(void)
{
    return syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
}
static long c_fstat(void)
{
    struct stat st;
    return syscall(SYS_fstat, te.efd_a, &st);
}
static long c_newfstatat(void)
{
    struct stat st;
    return syscall(SYS_newfstatat, AT_FDCWD, "/etc/passwd", &st, 0);
}
static long c_execve(void)
{
    char *argv[] = {(char *)"/bin/true", NULL};
    char *envp[] = {NULL};
    return syscall(SYS_execve, "/bin/true", argv, envp);
}
static long c_fork(void)
{
    long r = syscall(SYS_fork);
    if (r == 0) syscall(SYS_exit_group, CH_SUCCESS);
    return r;
}
static long c_vfork(void)
{
    long r = syscall(SYS_vfork);
    if (r == 0) syscall(SYS_exit, CH_SUCCESS);
    return r;
}
static long c_clone(void)
{
    long r = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    if (r == 0) syscall(SYS_exit_group, CH_SUCCESS);
    return r;
}
static long c_clone3(void)
{
    uint64_t args[11];
    memset(args, 0, sizeof args);
    args[4] = SIGCHLD;
    long r = syscall(SYS_clone3, args, sizeof args);
    if (r == 0) syscall(SYS_exit_group, CH_SUCCESS);
    return r;
}
static long c_ptrace(void)
{
    return syscall(SYS_ptrace, 0, 0, 0, 0);
}
static long c_vm_readv(void)
{
    return syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0);
}
static long c_vm_writev(void)
{
    return syscall(SYS_process_vm_writev, 1, NULL, 0, NULL, 0, 0);
}
static long c_kill(void)
{
    return syscall(SYS_kill, 1, 0);
}
static long c_tgkill(void)
{
    return syscall(SYS_tgkill, 1, 1, 0);
}
static long c_tkill(void)
{
    return syscall(SYS_tkill, 1, 0);
}
static long c_uring_setup(void)
{
    uint8_t params[120];
    memset(params, 0, sizeof params);
    return syscall(SYS_io_uring_setup, 1, params);
}
static long c_uring_enter(void)
{
    return syscall(SYS_io_uring_enter, 0, 0, 0, 0, NULL, 0);
}
static long c_uring_register(void)
{
    return syscall(SYS_io_uring_register, 0, 0, NULL, 0);
}
static long c_memfd(void)
{
    return syscall(SYS_memfd_create, "x", 0);
}
static long c_bpf(void)
{
    return syscall(SYS_bpf, 0, NULL, 0);
}
static long c_userfaultfd(void)
{
    return syscall(SYS_userfaultfd, 0);
}
static long c_perf(void)
{
    return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
}
static long c_ioctl(void)
{
    int n = 0;
    return syscall(SYS_ioctl, te.efd_a, 0x541B /* FIONREAD */, &n);
}
static long c_prctl(void)
{
    return syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
}
static long c_prctl_nnp(void)
{
    return syscall(SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
}
static long c_unshare(void)
{
    return syscall(SYS_unshare, 0);
}
static long c_setns(void)
{
    return syscall(SYS_setns, -1, 0);
}
static long c_mount(void)
{
    return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
}
static long c_seccomp(void)
{
    uint32_t action = 0;
    return syscall(SYS_seccomp, 2, 0, &action);
}
static long c_rseq(void)
{
    return syscall(SYS_rseq, NULL, 0, 0, 0);
}
static long c_prlimit(void)
{
    uint64_t old[2];
    return syscall(SYS_prlimit64, 0, 7, NULL, old);
}
static long c_getpid(void)
{
    return syscall(SYS_getpid);
}
static long c_mmap_exec(void)
{
    return syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
static long c_mmap_file(void)
{
    return syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_SHARED, te.memfd, 0);
}
static long c_mmap_anon_fd(void)
{
    /* MAP_ANONYMOUS but a real descriptor: refused by the fd == -1 rule. */
    return syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, te.memfd, 0);
}
static long c_mprotect_exec(void)
{
    return syscall(SYS_mprotect, te.page, 4096, PROT_READ | PROT_EXEC);
}
static long c_pkey_mprotect(void)
{
    return syscall(SYS_pkey_mprotect, te.page, 4096, PROT_READ, -1);
}
static long c_write_stdout(void)
{
    return syscall(SYS_write, 1, "", 0);
}
static long c_read_memfd(void)
{
    char c;
    return syscall(SYS_read, te.memfd, &c, 1);
}
static long c_write_highfd(void)
{
    uint64_t one = 1;
    return syscall(SYS_write, (1L << 32) | te.efd_a, &one, sizeof one);
}
static long c_x32(void)
{
    return syscall(0x40000000L | SYS_getpid);
}
static long c_i386(void)
{
    long r = 20; /* getpid in the i386 table */
    __asm__ volatile("int $0x80" : "+a"(r) : : "memory");
    return r;
}

/* Allowed operations: return 0 when the operation worked as it should, -1
 * with errno set otherwise. */
static long fail_with(int e)
{
    errno = e;
    return -1;
}
static long a_eventfd(void)
{
    uint64_t v = 5;
    if (syscall(SYS_write, te.efd_b, &v, sizeof v) != sizeof v) return -1;
    v = 0;
    if (syscall(SYS_read, te.efd_b, &v, sizeof v) != sizeof v) return -1;
    return v == 5 ? 0 : fail_with(EPROTO);
}
static long a_clock(void)
{
    struct timespec ts;
    struct {
        long s, us;
    } tv;
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) return -1;
    if (syscall(SYS_clock_getres, CLOCK_REALTIME, &ts) != 0) return -1;
    if (syscall(SYS_gettimeofday, &tv, NULL) != 0) return -1;
    struct timespec d = {0, 1000};
    if (syscall(SYS_nanosleep, &d, NULL) != 0) return -1;
    return syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &d, NULL);
}
static long a_mmap(void)
{
    size_t len = 1u << 20;
    char *p = (char *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    p[0] = 1;
    p[len - 1] = 2;
    if (syscall(SYS_mprotect, p, 4096, PROT_READ) != 0) return -1;
    if (syscall(SYS_mprotect, p, 4096, PROT_READ | PROT_WRITE) != 0) return -1;
    if (syscall(SYS_madvise, p + 4096, 4096, MADV_DONTNEED) != 0) return -1;
    char *q = (char *)syscall(SYS_mremap, p, len, 2 * len, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) return -1;
    if (q[len - 1] != 2) return fail_with(EPROTO);
    if (syscall(SYS_munmap, q, 2 * len) != 0) return -1;
    long b = syscall(SYS_brk, 0);
    return b > 0 ? 0 : fail_with(ENOMEM);
}
static long a_malloc(void)
{
    size_t len = 100u << 20;
    char *p = malloc(len);
    if (!p) return fail_with(ENOMEM);
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (char)i;
    free(p);
    return 0;
}
static long a_futex(void)
{
    int word = 0;
    return syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 0 ? 0
                                                                                : fail_with(EPROTO);
}
static long a_ppoll(void)
{
    struct pollfd pfd = {.fd = te.efd_a, .events = POLLIN};
    struct timespec to = {0, 2000000};
    if (syscall(SYS_ppoll, &pfd, 1, &to, NULL, 8) != 0) return fail_with(EPROTO);
    uint64_t v = 1;
    if (syscall(SYS_write, te.efd_a, &v, sizeof v) != sizeof v) return -1;
    if (syscall(SYS_poll, &pfd, 1, 1000) != 1 || !(pfd.revents & POLLIN)) return fail_with(EPROTO);
    return 0;
}
static long a_misc(void)
{
    unsigned char buf[16];
    if (syscall(SYS_getrandom, buf, sizeof buf, 0) != sizeof buf) return -1;
    if (syscall(SYS_sched_yield) != 0) return -1;
    if (syscall(SYS_prctl, PR_GET_SECCOMP, 0, 0, 0, 0) != 2) return fail_with(EPROTO);
    sigset_t set;
    sigemptyset(&set);
    if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 8) != 0) return -1;
    return syscall(SYS_close, te.memfd);
}

/* libc calls that probe the system on first use (tzset opens and stats
 * /etc/localtime) must get errors, not kills. */
static long a_libc(void)
{
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm)) return fail_with(EPROTO);
    char buf[64];
    if (strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0) return fail_with(EPROTO);
    return snprintf(buf, sizeof buf, "%g %s", 1.5, strerror(EACCES)) > 0 ? 0 : -1;
}

/* One row of the matrix: name, call, expected outcome (SIGSYS, an errno, or
 * success). */
enum want { WANT_KILL, WANT_ERRNO, WANT_OK };
struct row {
    const char *name;
    long (*fn)(void);
    enum want want;
    int err; /* for WANT_ERRNO */
};

static const struct row forbidden[] = {
    {"socket", c_socket, WANT_KILL, 0},
    {"connect", c_connect, WANT_KILL, 0},
    {"open", c_open, WANT_ERRNO, SBX_OPEN_ERRNO},
    {"openat", c_openat, WANT_ERRNO, SBX_OPEN_ERRNO},
    {"fstat", c_fstat, WANT_ERRNO, SBX_OPEN_ERRNO},
    {"newfstatat", c_newfstatat, WANT_ERRNO, SBX_OPEN_ERRNO},
    {"execve", c_execve, WANT_KILL, 0},
    {"fork", c_fork, WANT_KILL, 0},
    {"vfork", c_vfork, WANT_KILL, 0},
    {"clone", c_clone, WANT_KILL, 0},
    {"clone3", c_clone3, WANT_KILL, 0},
    {"ptrace", c_ptrace, WANT_KILL, 0},
    {"process_vm_readv", c_vm_readv, WANT_KILL, 0},
    {"process_vm_writev", c_vm_writev, WANT_KILL, 0},
    {"kill", c_kill, WANT_KILL, 0},
    {"tgkill", c_tgkill, WANT_KILL, 0},
    {"tkill", c_tkill, WANT_KILL, 0},
    {"io_uring_setup", c_uring_setup, WANT_KILL, 0},
    {"io_uring_enter", c_uring_enter, WANT_KILL, 0},
    {"io_uring_register", c_uring_register, WANT_KILL, 0},
    {"memfd_create", c_memfd, WANT_KILL, 0},
    {"bpf", c_bpf, WANT_KILL, 0},
    {"userfaultfd", c_userfaultfd, WANT_KILL, 0},
    {"perf_event_open", c_perf, WANT_KILL, 0},
    {"ioctl", c_ioctl, WANT_KILL, 0},
    {"prctl(SET_DUMPABLE)", c_prctl, WANT_KILL, 0},
    {"prctl(GET_NO_NEW_PRIVS)", c_prctl_nnp, WANT_KILL, 0},
    {"unshare", c_unshare, WANT_KILL, 0},
    {"setns", c_setns, WANT_KILL, 0},
    {"mount", c_mount, WANT_KILL, 0},
    {"seccomp", c_seccomp, WANT_KILL, 0},
    {"rseq", c_rseq, WANT_ERRNO, SBX_RSEQ_ERRNO},
    {"prlimit64", c_prlimit, WANT_KILL, 0},
    {"getpid", c_getpid, WANT_KILL, 0},
    {"mmap PROT_EXEC", c_mmap_exec, WANT_KILL, 0},
    {"mmap file-backed", c_mmap_file, WANT_KILL, 0},
    {"mmap anonymous with an fd", c_mmap_anon_fd, WANT_KILL, 0},
    {"mprotect PROT_EXEC", c_mprotect_exec, WANT_KILL, 0},
    {"pkey_mprotect", c_pkey_mprotect, WANT_KILL, 0},
    {"write to fd 1", c_write_stdout, WANT_KILL, 0},
    {"read of a non-allowed fd", c_read_memfd, WANT_KILL, 0},
    {"write with high fd bits", c_write_highfd, WANT_KILL, 0},
    {"x32 syscall bit", c_x32, WANT_KILL, 0},
    {"i386 int 0x80", c_i386, WANT_KILL, 0},
};

static const struct row allowed[] = {
    {"eventfd read/write", a_eventfd, WANT_OK, 0},
    {"clocks and sleeps", a_clock, WANT_OK, 0},
    {"anonymous mmap/mprotect/madvise/mremap/munmap/brk", a_mmap, WANT_OK, 0},
    {"malloc 100 MB", a_malloc, WANT_OK, 0},
    {"futex wake", a_futex, WANT_OK, 0},
    {"ppoll timeout, poll ready", a_ppoll, WANT_OK, 0},
    {"libc localtime/strftime/snprintf (first use after lockdown)", a_libc, WANT_OK, 0},
    {"getrandom, sched_yield, prctl(GET_SECCOMP), sigprocmask, close", a_misc, WANT_OK, 0},
};

/* Forks a child that locks down with {efd_a, efd_b} and runs fn; returns the
 * wait status. */
static int run_locked(long (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        te.efd_a = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        te.efd_b = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        te.memfd = (int)syscall(SYS_memfd_create, "t", MFD_CLOEXEC);
        te.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (te.efd_a < 0 || te.efd_b < 0 || te.memfd < 0 || te.page == MAP_FAILED ||
            ftruncate(te.memfd, 4096) != 0)
            _exit(CH_SETUP_FAILED);
        alarm(5);
        int fds[2] = {te.efd_a, te.efd_b};
        char log[256];
        if (sbx_lockdown(fds, 2, log, sizeof log) != 0) _exit(CH_SETUP_FAILED);
        errno = 0;
        long r = fn();
        if (r == -1) syscall(SYS_exit_group, CH_ERRNO_BASE + errno);
        syscall(SYS_exit_group, CH_SUCCESS);
        _exit(CH_SUCCESS);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

static void describe(int st, char *buf, size_t cap)
{
    if (WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st) && WEXITSTATUS(st) == CH_SUCCESS)
        snprintf(buf, cap, "the call succeeded");
    else if (WIFEXITED(st) && WEXITSTATUS(st) == CH_SETUP_FAILED)
        snprintf(buf, cap, "setup/lockdown failed");
    else if (WIFEXITED(st) && WEXITSTATUS(st) >= CH_ERRNO_BASE)
        snprintf(buf, cap, "failed with errno %d (%s)", WEXITSTATUS(st) - CH_ERRNO_BASE,
                 strerror(WEXITSTATUS(st) - CH_ERRNO_BASE));
    else
        snprintf(buf, cap, "wait status 0x%x", st);
}

static int check_row(const struct row *r)
{
    int st = run_locked(r->fn);
    int ok;
    switch (r->want) {
    case WANT_KILL:
        ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
        break;
    case WANT_ERRNO:
        ok = WIFEXITED(st) && WEXITSTATUS(st) == CH_ERRNO_BASE + r->err;
        break;
    default:
        ok = WIFEXITED(st) && WEXITSTATUS(st) == CH_SUCCESS;
        break;
    }
    if (!ok) {
        char got[128];
        describe(st, got, sizeof got);
        fprintf(stderr, "\n  sandbox matrix: %s: expected %s, got %s\n", r->name,
                r->want == WANT_KILL    ? "SIGSYS"
                : r->want == WANT_ERRNO ? strerror(r->err)
                                        : "success",
                got);
    }
    return ok;
}

static void test_forbidden_matrix(void)
{
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        CU_ASSERT(check_row(&forbidden[i]));
}

static void test_allowed_matrix(void)
{
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        CU_ASSERT(check_row(&allowed[i]));
}

/* ---- golden export ---- */

/* Reads a whole descriptor from offset 0 into a malloc'd buffer. */
static char *slurp_fd(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b || lseek(fd, 0, SEEK_SET) != 0) {
        free(b);
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            free(b);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

static void test_golden_export(void)
{
    static const int fds[] = {3, 4, 5, 6};
    void *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(sbx_filter_build(&ctx, fds, 4), 0);
    int mfd = (int)syscall(SYS_memfd_create, "pfc", MFD_CLOEXEC);
    CU_ASSERT_FATAL(mfd >= 0);
    CU_ASSERT_EQUAL(seccomp_export_pfc((scmp_filter_ctx)ctx, mfd), 0);
    sbx_filter_free(ctx);
    size_t glen = 0, elen = 0;
    char *got = slurp_fd(mfd, &elen);
    close(mfd);
    int gfd = open(GOLDEN_PATH, O_RDONLY | O_CLOEXEC);
    char *want = gfd >= 0 ? slurp_fd(gfd, &glen) : NULL;
    if (gfd >= 0) close(gfd);
    int same = got && want && glen == elen && memcmp(got, want, glen) == 0;
    if (!same)
        fprintf(stderr,
                "\n  %s differs from the filter built now (or is missing; tests run from the "
                "repo root).\n  If the change is intended, regenerate it: make build/sbx_export "
                "&& build/sbx_export > %s\n",
                GOLDEN_PATH, GOLDEN_PATH);
    CU_ASSERT(same);
    free(got);
    free(want);
}

/* The PFC text does not show libseccomp's x32 test; check the BPF program:
 * load arch, compare with x86-64, load nr, then "jge 0x40000000". */
static void test_bpf_arch_and_x32(void)
{
    static const int fds[] = {3};
    void *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(sbx_filter_build(&ctx, fds, 1), 0);
    int mfd = (int)syscall(SYS_memfd_create, "bpf", MFD_CLOEXEC);
    CU_ASSERT_FATAL(mfd >= 0);
    CU_ASSERT_EQUAL(seccomp_export_bpf((scmp_filter_ctx)ctx, mfd), 0);
    sbx_filter_free(ctx);
    size_t len = 0;
    char *raw = slurp_fd(mfd, &len);
    close(mfd);
    CU_ASSERT_FATAL(raw != NULL && len >= 4 * sizeof(struct sock_filter));
    struct sock_filter ins[4];
    memcpy(ins, raw, sizeof ins);
    CU_ASSERT_EQUAL(ins[0].code, BPF_LD | BPF_W | BPF_ABS);
    CU_ASSERT_EQUAL(ins[0].k, 4); /* offsetof(struct seccomp_data, arch) */
    CU_ASSERT_EQUAL(ins[1].code, BPF_JMP | BPF_JEQ | BPF_K);
    CU_ASSERT_EQUAL(ins[1].k, AUDIT_ARCH_X86_64);
    CU_ASSERT_EQUAL(ins[2].code, BPF_LD | BPF_W | BPF_ABS);
    CU_ASSERT_EQUAL(ins[2].k, 0); /* nr */
    CU_ASSERT_EQUAL(ins[3].code, BPF_JMP | BPF_JGE | BPF_K);
    CU_ASSERT_EQUAL(ins[3].k, 0x40000000u);
    free(raw);
}

static void test_bad_arguments(void)
{
    void *ctx = (void *)1;
    int neg[] = {3, -1};
    CU_ASSERT_EQUAL(sbx_filter_build(&ctx, neg, 2), -EINVAL);
    CU_ASSERT_PTR_NULL(ctx);
    int many[SBX_MAX_FDS + 1];
    for (int i = 0; i < SBX_MAX_FDS + 1; i++)
        many[i] = i + 3;
    CU_ASSERT_EQUAL(sbx_filter_build(&ctx, many, SBX_MAX_FDS + 1), -EINVAL);
    char log[64];
    /* Fails while building, so nothing is loaded into this process. */
    CU_ASSERT_EQUAL(sbx_lockdown(many, SBX_MAX_FDS + 1, log, sizeof log), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "cannot build"));
    struct sbx_opts o = {.keep_fds = many, .n_keep = SBX_MAX_FDS + 1};
    CU_ASSERT_EQUAL(sbx_prepare(&o, log, sizeof log), -EINVAL);
    CU_ASSERT_EQUAL(sbx_prepare(NULL, log, sizeof log), -EINVAL);
}

/* ---- sbx_prepare ---- */

/* Waits for a child and returns its exit code, or 100 + signal. */
static int wait_code(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static void test_prepare_closes_fds(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        alarm(5);
        int p[2];
        if (pipe(p) != 0 || dup2(p[0], 100) != 100 || open("/dev/null", O_RDONLY) < 0) _exit(2);
        int efd = eventfd(0, 0);
        struct sbx_opts o = {.keep_fds = &efd,
                             .n_keep = 1,
                             .broker_pid = getppid(),
                             .mem_bytes = TEST_ASAN ? 0 : 512u << 20,
                             .cpu_seconds = 5};
        char log[512];
        if (sbx_prepare(&o, log, sizeof log) != 0) _exit(3);
        if (!strstr(log, "fds closed") || !strstr(log, "rlimits")) _exit(4);
        for (int fd = 0; fd < 1024; fd++)
            if ((fcntl(fd, F_GETFD) >= 0) != (fd == efd)) _exit(5);
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur != 1 || rl.rlim_max != 1) _exit(6);
        if (getrlimit(RLIMIT_NPROC, &rl) != 0 || rl.rlim_max != 0) _exit(7);
        if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_max != 0) _exit(8);
        if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_max != 0) _exit(9);
        if (getrlimit(RLIMIT_CPU, &rl) != 0 || rl.rlim_cur != 5 || rl.rlim_max != 6) _exit(10);
        if (!TEST_ASAN && (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur != 512u << 20)) _exit(11);
        if (!TEST_ASAN && malloc(768u << 20) != NULL) _exit(12);
        int sig = 0;
        if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) != 0 || sig != SIGKILL) _exit(13);
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) _exit(14);
        if (getuid() == 0 || geteuid() == 0) _exit(15);
        pid_t g = fork(); /* RLIMIT_NPROC 0: must fail with EAGAIN */
        if (g == 0) _exit(0);
        if (g > 0) _exit(16);
        _exit(errno == EAGAIN ? 0 : 17);
    }
    int code = wait_code(pid);
    if (code != 0) fprintf(stderr, "\n  prepare child failed at step %d\n", code);
    CU_ASSERT_EQUAL(code, 0);
}

static void test_prepare_wrong_parent(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        alarm(5);
        struct sbx_opts o = {.broker_pid = getppid() + 1};
        char log[256];
        int rc = sbx_prepare(&o, log, sizeof log);
        if (rc != -ESRCH) _exit(3);
        if (!strstr(log, "parent is not the broker")) _exit(4);
        _exit(0);
    }
    CU_ASSERT_EQUAL(wait_code(pid), 0);
}

/* The broker (A) dies after the worker (B) prepared: B must get SIGKILL. A
 * helper process C is a child subreaper, so the orphaned B becomes its child
 * and C can see how B ended; the test process itself stays untouched. */
static void test_prepare_pdeathsig(void)
{
    _Atomic int *shared =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CU_ASSERT_FATAL(shared != MAP_FAILED);
    atomic_store(&shared[0], 0);
    fflush(NULL);
    pid_t c = fork();
    CU_ASSERT_FATAL(c >= 0);
    if (c == 0) {
        alarm(5);
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) _exit(2);
        pid_t a = fork();
        if (a < 0) _exit(2);
        if (a == 0) {
            pid_t b = fork();
            if (b < 0) _exit(2);
            if (b == 0) {
                struct sbx_opts o = {.broker_pid = getppid()};
                char log[256];
                atomic_store(&shared[1], getpid());
                int rc = sbx_prepare(&o, log, sizeof log);
                atomic_store(&shared[0], rc == 0 ? 1 : 2);
                if (rc != 0) _exit(3);
                for (;;)
                    syscall(SYS_ppoll, NULL, 0, NULL, NULL, 8);
            }
            for (int i = 0; i < 5000 && atomic_load(&shared[0]) == 0; i++)
                usleep(1000);
            _exit(0); /* the "broker" dies */
        }
        if (wait_code(a) != 0) _exit(4);
        pid_t b = atomic_load(&shared[1]);
        if (atomic_load(&shared[0]) != 1) _exit(5);
        int code = wait_code(b);
        _exit(code == 100 + SIGKILL ? 0 : 6);
    }
    int code = wait_code(c);
    if (code != 0) fprintf(stderr, "\n  pdeathsig helper failed at step %d\n", code);
    CU_ASSERT_EQUAL(code, 0);
    munmap(shared, 4096);
}

/* ---- the /proc view of a prepared and locked-down child ---- */

static char *read_text(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t len;
    char *t = slurp_fd(fd, &len);
    close(fd);
    return t;
}

/* Value after "Name:" in a /proc status text (static buffer). */
static const char *status_field(const char *text, const char *name)
{
    static char val[128];
    size_t nl = strlen(name);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t k = strcspn(v, "\n");
            if (k >= sizeof val) k = sizeof val - 1;
            memcpy(val, v, k);
            val[k] = '\0';
            return val;
        }
    }
    return "";
}

/* "soft hard" of one line of a /proc/PID/limits text (static buffer). */
static const char *limit_field(const char *text, const char *name)
{
    static char val[80];
    val[0] = '\0';
    const char *l = text ? strstr(text, name) : NULL;
    char soft[32], hard[32];
    if (l && sscanf(l + strlen(name), " %31s %31s", soft, hard) == 2)
        snprintf(val, sizeof val, "%s %s", soft, hard);
    return val;
}

static int same_ns(pid_t pid, const char *ns)
{
    char a[64], b[64], p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/%s", (int)pid, ns);
    ssize_t nb = readlink(p, b, sizeof b - 1);
    snprintf(p, sizeof p, "/proc/self/ns/%s", ns);
    ssize_t na = readlink(p, a, sizeof a - 1);
    if (na < 0 || nb < 0) return -1;
    return na == nb && memcmp(a, b, (size_t)na) == 0;
}

static void test_hygiene_proc_view(void)
{
    int ready = eventfd(0, EFD_CLOEXEC);
    int go = eventfd(0, EFD_CLOEXEC);
    char *log = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CU_ASSERT_FATAL(ready >= 0 && go >= 0 && log != MAP_FAILED);
    log[0] = '\0';
    const uint64_t mem = 1u << 30;
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        alarm(5);
        int keep[2] = {ready, go};
        struct sbx_opts o = {.keep_fds = keep,
                             .n_keep = 2,
                             .broker_pid = getppid(),
                             .mem_bytes = TEST_ASAN ? 0 : mem,
                             .cpu_seconds = 5,
                             .try_namespaces = 1};
        if (sbx_prepare(&o, log, 2048) != 0) _exit(2);
        if (sbx_lockdown(keep, 2, log + 2048, 2048) != 0) _exit(3);
        uint64_t one = 1;
        syscall(SYS_write, ready, &one, sizeof one);
        struct pollfd pfd = {.fd = go, .events = POLLIN};
        syscall(SYS_ppoll, &pfd, 1, NULL, NULL, 8);
        syscall(SYS_read, go, &one, sizeof one);
        syscall(SYS_exit_group, 0);
    }
    struct pollfd pfd = {.fd = ready, .events = POLLIN};
    int up = poll(&pfd, 1, 5000) == 1;
    CU_ASSERT(up);
    if (up) {
        uint64_t v;
        CU_ASSERT_EQUAL(read(ready, &v, sizeof v), (ssize_t)sizeof v);
        printf("\n    prepare: %s\n    lockdown: %s\n", log, log + 2048);
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        char *st = read_text(path);
        CU_ASSERT_PTR_NOT_NULL(st);
        if (st) {
            CU_ASSERT_STRING_EQUAL(status_field(st, "NoNewPrivs"), "1");
            CU_ASSERT_STRING_EQUAL(status_field(st, "Seccomp"), "2");
            /* Zero also inside the user namespace: sbx_prepare drops them. */
            CU_ASSERT_STRING_EQUAL(status_field(st, "CapEff"), "0000000000000000");
            CU_ASSERT_STRING_EQUAL(status_field(st, "CapPrm"), "0000000000000000");
            CU_ASSERT_STRING_EQUAL(status_field(st, "CapAmb"), "0000000000000000");
            if (geteuid() == 0) CU_ASSERT_PTR_NOT_NULL(strstr(status_field(st, "Uid"), "65534"));
            free(st);
        }
        if (geteuid() == 0) {
            /* The child is not dumpable: only a privileged reader sees these. */
            snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
            DIR *d = opendir(path);
            CU_ASSERT_PTR_NOT_NULL(d);
            int n = 0, seen_ready = 0, seen_go = 0;
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                int fd = atoi(e->d_name);
                n++;
                seen_ready |= fd == ready;
                seen_go |= fd == go;
            }
            if (d) closedir(d);
            CU_ASSERT_EQUAL(n, 2);
            CU_ASSERT(seen_ready && seen_go);
            /* /proc/PID/limits: prlimit() on another process would need
             * CAP_SYS_RESOURCE, which a container's root may lack. */
            snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
            char *lim = read_text(path);
            CU_ASSERT_PTR_NOT_NULL(lim);
            CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max processes"), "0 0");
            CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max open files"), "2 2");
            CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max file size"), "0 0");
            CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max core file size"), "0 0");
            CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max cpu time"), "5 6");
            if (!TEST_ASAN)
                CU_ASSERT_STRING_EQUAL(limit_field(lim, "Max address space"),
                                       "1073741824 1073741824");
            free(lim);
            if (strstr(log, "namespaces: user,net,ipc,uts,mnt")) {
                CU_ASSERT_EQUAL(same_ns(pid, "user"), 0);
                CU_ASSERT_EQUAL(same_ns(pid, "net"), 0);
                CU_ASSERT_EQUAL(same_ns(pid, "ipc"), 0);
                CU_ASSERT_EQUAL(same_ns(pid, "mnt"), 0);
                CU_ASSERT_EQUAL(same_ns(pid, "pid"), 1);
                /* Its root is an empty directory. */
                snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
                d = opendir(path);
                CU_ASSERT_PTR_NOT_NULL(d);
                int entries = 0;
                while (d && (e = readdir(d)) != NULL)
                    entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
                if (d) closedir(d);
                CU_ASSERT_EQUAL(entries, 0);
            } else {
                printf("    (namespaces unavailable here: namespace checks skipped)\n");
            }
        } else {
            printf("    (not root: /proc/PID/fd and rlimit checks of the child skipped)\n");
        }
    }
    uint64_t one = 1;
    CU_ASSERT_EQUAL(write(go, &one, sizeof one), (ssize_t)sizeof one);
    CU_ASSERT_EQUAL(wait_code(pid), 0);
    close(ready);
    close(go);
    munmap(log, 4096);
}

int suite_sandbox(void)
{
    CU_pSuite s = CU_add_suite("sandbox", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "golden PFC export of the filter", test_golden_export) ||
        !CU_add_test(s, "BPF: arch check and x32 bit", test_bpf_arch_and_x32) ||
        !CU_add_test(s, "bad arguments are refused before loading", test_bad_arguments) ||
        !CU_add_test(s, "forbidden calls die by SIGSYS or get the mapped errno",
                     test_forbidden_matrix) ||
        !CU_add_test(s, "allowed calls work under the filter", test_allowed_matrix) ||
        !CU_add_test(s, "prepare closes fds, sets rlimits, pdeathsig, not dumpable",
                     test_prepare_closes_fds) ||
        !CU_add_test(s, "prepare fails cleanly when the parent is not the broker",
                     test_prepare_wrong_parent) ||
        !CU_add_test(s, "worker dies when the broker dies", test_prepare_pdeathsig) ||
        !CU_add_test(s, "/proc view of a locked-down child", test_hygiene_proc_view))
        return CU_get_error();
    return 0;
}

/* The worker's production seccomp filter (built with libseccomp).
 *
 * Layer: sandbox/. Plain C on libseccomp; must not depend on Lua,
 * libwebsockets, broker/ or lua/.
 *
 * Policy: everything not listed below kills the whole process with SIGSYS
 * (SCMP_ACT_KILL_PROCESS), including every system call of another ABI: the
 * filter accepts only AUDIT_ARCH_X86_64, and libseccomp's bad-arch action is
 * set to kill the process. x32 system calls arrive with the x86-64 arch value
 * and the __X32_SYSCALL_BIT (0x40000000) set in the number; libseccomp emits a
 * test for that bit that also jumps to the bad-arch action when the x32 ABI is
 * not in the filter, and we add no x32 ABI, so they die as well (the golden
 * file and the unit test show it).
 *
 * Allowed after start-up (what the Lua runtime, the scheduler and the rings
 * need, nothing else):
 *   read, write          only on the descriptors in allowed_fds (the
 *                        worker's eventfds); the fd argument is compared as a
 *                        full 64-bit value, so high garbage bits do not pass
 *   ppoll, poll          waiting on the eventfds (they only report readiness)
 *   futex                libc locks and wake-ups
 *   clock_gettime, clock_getres, clock_nanosleep, gettimeofday, time,
 *   nanosleep            time (normally served by the vDSO without a syscall)
 *   mmap                 only without PROT_EXEC, only MAP_ANONYMOUS and with
 *                        fd == -1 (low 32 bits): no file-backed mapping
 *   mprotect             only without PROT_EXEC (no pkey_mprotect)
 *   munmap, mremap, brk, madvise   heap management
 *   close                closing its own descriptors gains nothing
 *   exit, exit_group, rt_sigreturn, rt_sigprocmask, restart_syscall
 *   sched_yield          spin-wait back-off
 *   sigaltstack          only the calling thread's alternate signal stack;
 *                        the ASan runtime queries it when the worker exits
 *   getrandom            seeding; needs no descriptor
 *   prctl                only PR_GET_SECCOMP (the self-probe); every other
 *                        option kills
 * Answered with an errno instead of a kill (libc may try them on its own, for
 * example tzset() opening /etc/localtime; failing is harmless):
 *   open, openat, openat2 -> EACCES (SBX_OPEN_ERRNO)
 *   stat, lstat, fstat, newfstatat, statx -> EACCES (stdio's first output
 *                         on a stream fstat()s its descriptor; tzset stats
 *                         its file); the kernel never sees the path
 *   rseq                  -> ENOSYS (SBX_RSEQ_ERRNO)
 * Notably killed: socket, connect, execve(at), fork, vfork, clone, clone3,
 * ptrace, process_vm_readv/writev, kill, tgkill, tkill (also of itself: an
 * abort() therefore ends with SIGSYS instead of SIGABRT), io_uring_*,
 * memfd_create, bpf, userfaultfd, perf_event_open, ioctl, unshare, setns,
 * mount, seccomp, pkey_mprotect, setrlimit/prlimit64. */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>

/* Adds one rule; on failure releases nothing (the caller does). */
#define ADD(ctx, action, name, ...)                                                                \
    do {                                                                                           \
        int rc_ = seccomp_rule_add((ctx), (action), SCMP_SYS(name), __VA_ARGS__);                  \
        if (rc_ < 0) return rc_;                                                                   \
    } while (0)

/* System calls allowed without an argument condition. */
static int add_plain_rules(scmp_filter_ctx ctx)
{
    static const int plain[] = {
        SCMP_SYS(ppoll),           SCMP_SYS(poll),         SCMP_SYS(futex),
        SCMP_SYS(clock_gettime),   SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep),
        SCMP_SYS(gettimeofday),    SCMP_SYS(time),         SCMP_SYS(nanosleep),
        SCMP_SYS(munmap),          SCMP_SYS(mremap),       SCMP_SYS(brk),
        SCMP_SYS(madvise),         SCMP_SYS(close),        SCMP_SYS(exit),
        SCMP_SYS(exit_group),      SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(restart_syscall), SCMP_SYS(sched_yield),  SCMP_SYS(getrandom),
        SCMP_SYS(sigaltstack),
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain[i], 0);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Rules with argument conditions and errno answers. */
static int add_arg_rules(scmp_filter_ctx ctx, const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        scmp_datum_t fd = (scmp_datum_t)fds[i];
        ADD(ctx, SCMP_ACT_ALLOW, read, 1, SCMP_A0(SCMP_CMP_EQ, fd));
        ADD(ctx, SCMP_ACT_ALLOW, write, 1, SCMP_A0(SCMP_CMP_EQ, fd));
    }
    /* mmap(addr, len, prot, flags, fd, off): no PROT_EXEC, anonymous only,
     * fd -1 in its low 32 bits (the kernel reads fd as an int). */
    ADD(ctx, SCMP_ACT_ALLOW, mmap, 3, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
        SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS),
        SCMP_A4(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0xffffffffu));
    ADD(ctx, SCMP_ACT_ALLOW, mprotect, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    ADD(ctx, SCMP_ACT_ALLOW, prctl, 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_SECCOMP));
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), open, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), openat, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), openat2, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), stat, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), lstat, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), fstat, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), newfstatat, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_OPEN_ERRNO), statx, 0);
    ADD(ctx, SCMP_ACT_ERRNO(SBX_RSEQ_ERRNO), rseq, 0);
    return 0;
}

int sbx_filter_build(void **ctx_out, const int *allowed_fds, size_t n)
{
    *ctx_out = NULL;
#if !defined(__x86_64__) || defined(__ILP32__)
    (void)allowed_fds;
    (void)n;
    return -ENOTSUP;
#else
    if (n > SBX_MAX_FDS || (n > 0 && !allowed_fds)) return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (allowed_fds[i] < 0) return -EINVAL;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) return -ENOMEM;
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
    if (rc == 0) rc = add_plain_rules(ctx);
    if (rc == 0) rc = add_arg_rules(ctx, allowed_fds, n);
    if (rc < 0) {
        seccomp_release(ctx);
        return rc;
    }
    *ctx_out = ctx;
    return 0;
#endif
}

void sbx_filter_free(void *ctx)
{
    if (ctx) seccomp_release((scmp_filter_ctx)ctx);
}

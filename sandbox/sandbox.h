/* The worker's sandbox: descriptor hygiene, parent binding, resource limits,
 * privilege drop, namespaces (sbx_prepare) and the seccomp filter with its
 * self-probe (sbx_lockdown).
 *
 * Layer: sandbox/. Plain C on libc and libseccomp; it must not depend on Lua,
 * libwebsockets, broker/ or lua/.
 *
 * Order of use in the worker:
 *   1. map the shm regions (shm_link_attach_worker), so the memfds may close;
 *   2. sbx_prepare(): every step that still needs ordinary system calls;
 *   3. build the Lua state, load nothing from files (the script comes as
 *      records);
 *   4. sbx_lockdown(): no-new-privs, load the filter, prove it is active.
 *      Only when it returns 0 may a script run.
 *
 * Every function returns 0 or a negative errno value (-EPERM, ...). Log texts
 * are single lines, always NUL-terminated when logcap > 0, truncated if
 * needed. See sandbox/SANDBOX.md for what each layer protects against. */
#ifndef SBX_SANDBOX_H
#define SBX_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Largest number of descriptors the filter can allow read/write on. */
#define SBX_MAX_FDS 16

/* Outer uid/gid a worker started as root switches to before anything else. */
#define SBX_NOBODY_ID 65534

struct sbx_opts {
    const int *keep_fds;  /* descriptors to keep open (caller owns the array); all
                             others are closed. Ring memfds that are already mapped
                             need not be listed. */
    size_t n_keep;        /* entries in keep_fds (at most SBX_MAX_FDS) */
    pid_t broker_pid;     /* expected parent pid; 0 = do not check (tests only) */
    uint64_t mem_bytes;   /* RLIMIT_AS in bytes, soft = hard; 0 = leave as is */
    uint64_t cpu_seconds; /* RLIMIT_CPU soft limit in seconds (SIGXCPU), hard
                             = soft + 1 (SIGKILL); 0 = leave as is */
    int try_namespaces;   /* 1: enter new user/net/ipc/uts/mount namespaces
                             with an empty read-only root when the kernel allows */
    int in_pid_ns;        /* 1: started by the broker as the init of a new PID
                             namespace; getppid() is 0 there, so the parent
                             check was made by the broker before exec (with
                             a pidfd of itself) and is not repeated here */
};

/* The start-up steps before the Lua state exists, in this order:
 *   - close every descriptor not in keep_fds (close_range, or a walk of
 *     /proc/self/fd, or a bounded loop when /proc is missing); every kept
 *     descriptor must be open (-EBADF otherwise);
 *   - PR_SET_PDEATHSIG(SIGKILL), then getppid() must equal broker_pid
 *     (checked after setting it, so a broker that died before is noticed);
 *     repeated after the credential changes below, which clear it;
 *   - when running as root: drop the bounding set, supplementary groups, and
 *     switch gid/uid to SBX_NOBODY_ID (the worker never keeps uid 0);
 *   - namespaces (try_namespaces): unshare user+net+ipc+uts+mount, map the
 *     current uid/gid to 0 inside, make mounts private, mount an empty
 *     read-only tmpfs and pivot_root into it (chroot as fallback). No PID
 *     namespace: unshare(CLONE_NEWPID) would only apply to children, and the
 *     worker may never have any (RLIMIT_NPROC 0 and the filter). When the
 *     kernel refuses, the log says so and the other layers still apply;
 *   - drop every capability (bounding set, ambient, effective/permitted/
 *     inheritable), also the full set a new user namespace grants;
 *   - PR_SET_DUMPABLE 0 (no core dumps, no ptrace by same-uid processes,
 *     /proc/PID owned by root);
 *   - rlimits: NPROC 0, FSIZE 0, CORE 0, NOFILE = number of kept
 *     descriptors, AS = mem_bytes, CPU = cpu_seconds (soft) + 1 (hard).
 * Writes a one-line summary of the active layers into log. Returns 0, or a
 * negative errno: -ESRCH when the parent is not broker_pid, -EINVAL for bad
 * options, -EBADF for a kept descriptor that is not open, or the errno of a
 * step that must not fail. Namespaces failing is not an error. Must be called
 * single-threaded. Note RLIMIT_FSIZE 0: a kept descriptor that is a regular
 * file cannot grow any more (SIGXFSZ). */
int sbx_prepare(const struct sbx_opts *o, char *log, size_t logcap);

/* After the Lua state is built: PR_SET_NO_NEW_PRIVS, load the production
 * filter for allowed_fds (n <= SBX_MAX_FDS), then probe it: prctl
 * (PR_GET_SECCOMP) must say 2 (filter mode) and openat("/") must fail with
 * EACCES (the filter's answer; root would otherwise succeed). Returns 0 only
 * when the filter is verified active; otherwise a negative errno and the
 * caller must not run any script (exit instead). Writes one line into log. */
int sbx_lockdown(const int *allowed_fds, size_t n, char *log, size_t logcap);

/* Builds the production filter into a libseccomp scmp_filter_ctx, returned
 * as *ctx_out (owned by the caller; free with sbx_filter_free). Nothing is
 * loaded. Used by sbx_lockdown, by the golden-file test and by
 * tests/tools/sbx_export. Returns 0, -EINVAL for a bad fd list, -ENOTSUP on an
 * architecture other than x86-64, or a libseccomp error. */
int sbx_filter_build(void **ctx_out, const int *allowed_fds, size_t n);
void sbx_filter_free(void *ctx);

/* The errno the filter returns for open/openat/openat2 and the stat family
 * (everything else that is not allowed kills the process with SIGSYS). */
#define SBX_OPEN_ERRNO 13 /* EACCES */

/* The errno the filter returns for rseq (glibc probes it for new threads). */
#define SBX_RSEQ_ERRNO 38 /* ENOSYS */

#endif

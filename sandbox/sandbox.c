/* Start-up steps of the worker sandbox (sbx_prepare) and the filter lockdown
 * with its self-probe (sbx_lockdown). The filter itself is in seccomp.c.
 *
 * Layer: sandbox/. Plain C on libc and libseccomp; must not depend on Lua,
 * libwebsockets, broker/ or lua/.
 *
 * Why this order in sbx_prepare: descriptors go first so nothing below can
 * leak through an inherited one; the uid drop and the user namespace change
 * credentials, and the kernel clears the parent-death signal and resets
 * "dumpable" on such changes, so both are set after them; writing uid_map
 * needs a dumpable process (its /proc/self files are root-owned otherwise);
 * rlimits come last because the namespace step still opens files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare, setresuid, close_range constants */
#endif
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A bounded one-line log being built. */
struct sbx_log {
    char *buf;  /* caller's buffer (not owned) */
    size_t cap; /* its size in bytes */
    size_t len; /* bytes used, excluding the NUL */
};

static void log_init(struct sbx_log *lg, char *buf, size_t cap)
{
    lg->buf = buf;
    lg->cap = buf ? cap : 0;
    lg->len = 0;
    if (lg->cap) lg->buf[0] = '\0';
}

/* Appends "; " (unless first) and the formatted text, truncating. */
__attribute__((format(printf, 2, 3))) static void log_add(struct sbx_log *lg, const char *fmt, ...)
{
    if (lg->cap == 0 || lg->len + 1 >= lg->cap) return;
    if (lg->len > 0) {
        int k = snprintf(lg->buf + lg->len, lg->cap - lg->len, "; ");
        lg->len += (size_t)k;
        if (lg->len >= lg->cap) {
            lg->len = lg->cap - 1;
            return;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(lg->buf + lg->len, lg->cap - lg->len, fmt, ap);
    va_end(ap);
    if (k > 0) lg->len += (size_t)k;
    if (lg->len >= lg->cap) lg->len = lg->cap - 1;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int is_kept(int fd, const int *keep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (keep[i] == fd) return 1;
    return 0;
}

/* Closes [lo, hi] with close_range; returns 0 or -errno (ENOSYS on old
 * kernels). */
static int close_span(unsigned lo, unsigned hi)
{
    if (lo > hi) return 0;
    if (syscall(SYS_close_range, lo, hi, 0) != 0) return -errno;
    return 0;
}

/* Fallback when close_range is missing: walk /proc/self/fd (collect first,
 * then close, so the directory stream is not disturbed). */
static int close_by_proc(const int *keep, size_t n)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -errno;
    int self = dirfd(d);
    int found[1024];
    size_t nf = 0;
    int more = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int fd = atoi(e->d_name);
        if (fd == self || is_kept(fd, keep, n)) continue;
        if (nf < sizeof found / sizeof found[0])
            found[nf++] = fd;
        else
            more = 1;
    }
    closedir(d);
    for (size_t i = 0; i < nf; i++)
        close(found[i]);
    return more ? close_by_proc(keep, n) : 0;
}

/* Last resort without /proc: every number below the descriptor limit. */
static void close_by_loop(const int *keep, size_t n)
{
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)max)
        max = (long)rl.rlim_cur;
    for (long fd = 0; fd < max; fd++)
        if (!is_kept((int)fd, keep, n)) close((int)fd);
}

/* Closes everything but keep[0..n) (sorted, distinct). */
static int close_other_fds(const int *keep, size_t n, const char **how)
{
    unsigned lo = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((unsigned)keep[i] > lo) rc = close_span(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    if (rc == 0) rc = close_span(lo, ~0u);
    if (rc == 0) {
        *how = "close_range";
        return 0;
    }
    if (close_by_proc(keep, n) == 0) {
        *how = "/proc/self/fd";
        return 0;
    }
    close_by_loop(keep, n);
    *how = "loop";
    return 0;
}

/* When running as root: no supplementary groups, gid and uid nobody. */
static int drop_root(struct sbx_log *lg)
{
    if (getuid() != 0 && geteuid() != 0 && getgid() != 0 && getegid() != 0) return 0;
    if (setgroups(0, NULL) != 0) return -errno;
    if (setresgid(SBX_NOBODY_ID, SBX_NOBODY_ID, SBX_NOBODY_ID) != 0) return -errno;
    if (setresuid(SBX_NOBODY_ID, SBX_NOBODY_ID, SBX_NOBODY_ID) != 0) return -errno;
    if (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0) return -EPERM;
    log_add(lg, "uid/gid root->%d", SBX_NOBODY_ID);
    return 0;
}

/* Writes a short text to a /proc file; 0 or -errno. */
static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int err = w == (ssize_t)len ? 0 : (w < 0 ? -errno : -EIO);
    close(fd);
    return err;
}

/* Mount an empty read-only tmpfs on a directory of the (private) mount tree
 * and make it the root: pivot_root(".", ".") stacks the old root under the
 * new one, and the lazy unmount removes it. chroot is the fallback. */
static int enter_empty_root(struct sbx_log *lg)
{
    static const char *const dirs[] = {"/tmp", "/mnt", "/var/tmp", "/dev/shm"};
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -errno;
    const char *dir = NULL;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && !dir; i++) {
        if (mount("sbxroot", dirs[i], "tmpfs",
                  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME,
                  "size=4k,nr_inodes=4,mode=0555") == 0)
            dir = dirs[i];
    }
    if (!dir) return -errno;
    if (chdir(dir) != 0) return -errno;
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH) != 0) return -errno;
        if (chdir("/") != 0) return -errno;
        log_add(lg, "root: empty read-only tmpfs (pivot_root)");
        return 0;
    }
    if (chroot(".") != 0 || chdir("/") != 0) return -errno;
    log_add(lg, "root: empty read-only tmpfs (chroot)");
    return 0;
}

/* New user, net, ipc, uts and mount namespaces; the current uid/gid become
 * 0 inside. A refusal is logged and is not an error. */
static void enter_namespaces(struct sbx_log *lg)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    /* The uid drop made us non-dumpable, which makes /proc/self/uid_map
     * root-owned and unwritable for us. A worker exec'd as an ordinary uid is
     * dumpable from exec until sbx_prepare anyway; it ends in sbx_prepare. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    int flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS;
    if (unshare(flags) != 0) {
        log_add(lg, "namespaces: unavailable (unshare: %s), other layers only", strerror(errno));
        return;
    }
    char map[64];
    int rc = write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    if (rc == 0) rc = write_file("/proc/self/uid_map", map);
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    if (rc == 0) rc = write_file("/proc/self/gid_map", map);
    if (rc != 0)
        log_add(lg, "namespaces: user,net,ipc,uts,mnt (id map failed: %s)", strerror(-rc));
    else
        log_add(lg, "namespaces: user,net,ipc,uts,mnt (uid %u -> 0 inside)", (unsigned)uid);
    rc = enter_empty_root(lg);
    if (rc != 0) log_add(lg, "root: unchanged (%s)", strerror(-rc));
}

/* Drops the bounding set where we hold CAP_SETPCAP (root before the uid
 * drop; inside a fresh user namespace, whose bounding set starts full). */
static void drop_bset(void)
{
    for (int c = 0; c < 64; c++)
        if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
}

/* Drops every capability: bounding set, ambient set, then effective,
 * permitted and inheritable. Logs whether the bounding set is empty (it
 * stays full for an unprivileged worker without a user namespace, which is
 * harmless: exec is impossible). */
static int drop_caps(struct sbx_log *lg)
{
    drop_bset();
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0) return -errno;
    int bset_empty = 1;
    for (int c = 0; c < 64; c++)
        if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) bset_empty = 0;
    log_add(lg, bset_empty ? "caps dropped (all sets)" : "caps dropped (bounding set kept)");
    return 0;
}

/* Sets soft and hard limit, never above the current hard limit. */
static int set_limit(int res, rlim_t soft, rlim_t hard)
{
    struct rlimit cur, rl;
    if (getrlimit(res, &cur) != 0) return -errno;
    if (cur.rlim_max != RLIM_INFINITY && hard > cur.rlim_max) hard = cur.rlim_max;
    if (soft > hard) soft = hard;
    rl.rlim_cur = soft;
    rl.rlim_max = hard;
    if (setrlimit(res, &rl) != 0) return -errno;
    return 0;
}

static int set_limits(const struct sbx_opts *o, size_t nopen, struct sbx_log *lg)
{
    int rc = set_limit(RLIMIT_NPROC, 0, 0);
    if (rc == 0) rc = set_limit(RLIMIT_FSIZE, 0, 0);
    if (rc == 0) rc = set_limit(RLIMIT_CORE, 0, 0);
    if (rc == 0) rc = set_limit(RLIMIT_NOFILE, nopen, nopen);
    if (rc == 0 && o->mem_bytes) rc = set_limit(RLIMIT_AS, o->mem_bytes, o->mem_bytes);
    if (rc == 0 && o->cpu_seconds) rc = set_limit(RLIMIT_CPU, o->cpu_seconds, o->cpu_seconds + 1);
    if (rc != 0) return rc;
    log_add(lg, "rlimits: nproc=0 fsize=0 core=0 nofile=%zu", nopen);
    if (o->mem_bytes) log_add(lg, "as=%llu", (unsigned long long)o->mem_bytes);
    if (o->cpu_seconds) log_add(lg, "cpu=%llus", (unsigned long long)o->cpu_seconds);
    return 0;
}

/* Parent-death signal, then the parent check (after setting it, so a broker
 * that died earlier is noticed: we would have been re-parented). */
static int bind_parent(pid_t broker, int in_pid_ns)
{
    if (in_pid_ns) broker = 0; /* getppid() is 0 across the namespace boundary */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -errno;
    if (broker > 0 && getppid() != broker) return -ESRCH;
    return 0;
}

int sbx_prepare(const struct sbx_opts *o, char *log, size_t logcap)
{
    struct sbx_log lg;
    log_init(&lg, log, logcap);
    if (!o || o->n_keep > SBX_MAX_FDS || (o->n_keep && !o->keep_fds)) return -EINVAL;
    int keep[SBX_MAX_FDS];
    size_t n = 0;
    for (size_t i = 0; i < o->n_keep; i++) {
        if (o->keep_fds[i] < 0) return -EINVAL;
        if (!is_kept(o->keep_fds[i], keep, n)) keep[n++] = o->keep_fds[i];
    }
    qsort(keep, n, sizeof keep[0], cmp_int);
    for (size_t i = 0; i < n; i++)
        if (fcntl(keep[i], F_GETFD) < 0) return -EBADF;

    const char *how = "";
    int rc = close_other_fds(keep, n, &how);
    if (rc != 0) return rc;
    log_add(&lg, "fds closed (kept %zu, %s)", n, how);

    rc = bind_parent(o->broker_pid, o->in_pid_ns);
    if (rc != 0) {
        log_add(&lg, "parent is not the broker");
        return rc;
    }
    drop_bset();
    rc = drop_root(&lg);
    if (rc != 0) return rc;
    if (o->try_namespaces)
        enter_namespaces(&lg);
    else
        log_add(&lg, "namespaces: not requested");
    rc = drop_caps(&lg);
    if (rc != 0) return rc;
    rc = bind_parent(o->broker_pid, o->in_pid_ns);
    if (rc != 0) {
        log_add(&lg, "parent is not the broker");
        return rc;
    }
    if (o->in_pid_ns)
        log_add(&lg, "pid namespace (init; parent checked by the broker before exec); pdeathsig");
    else
        log_add(&lg,
                o->broker_pid > 0 ? "pdeathsig; parent checked" : "pdeathsig (parent unchecked)");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -errno;
    log_add(&lg, "not dumpable");
    return set_limits(o, n, &lg);
}

int sbx_lockdown(const int *allowed_fds, size_t n, char *log, size_t logcap)
{
    struct sbx_log lg;
    log_init(&lg, log, logcap);
    void *ctx = NULL;
    int rc = sbx_filter_build(&ctx, allowed_fds, n);
    if (rc != 0) {
        log_add(&lg, "seccomp: cannot build the filter (%s)", strerror(-rc));
        return rc;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        rc = -errno;
        sbx_filter_free(ctx);
        log_add(&lg, "seccomp: no_new_privs failed (%s)", strerror(-rc));
        return rc;
    }
    rc = seccomp_load((scmp_filter_ctx)ctx);
    sbx_filter_free(ctx);
    if (rc != 0) {
        log_add(&lg, "seccomp: load failed (%s)", strerror(-rc));
        return rc < 0 ? rc : -EPERM;
    }
    /* Probe 1: the kernel reports filter mode (allowed by our prctl rule). */
    long mode = syscall(SYS_prctl, PR_GET_SECCOMP, 0, 0, 0, 0);
    /* Probe 2: our rule answers openat with EACCES. */
    long fd = syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) syscall(SYS_close, fd);
    if (mode != 2 || fd >= 0 || err != SBX_OPEN_ERRNO) {
        log_add(&lg, "seccomp: self-probe FAILED (mode %ld, openat %s)", mode,
                fd >= 0 ? "succeeded" : strerror(err));
        return -ENOTRECOVERABLE;
    }
    log_add(&lg, "seccomp: filter active, no_new_privs, %zu fds allowed, self-probe ok", n);
    return 0;
}

/* The audit log (audit.h).
 *
 * Layer: broker/, plain C and POSIX I/O. */
#include "broker/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct brk_audit *brk_audit_open(const char *path, char *err, size_t cap)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        snprintf(err, cap, "audit_log %s: %s", path, strerror(errno));
        return NULL;
    }
    struct brk_audit *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        close(fd);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    a->fd = fd;
    return a;
}

void brk_audit_close(struct brk_audit *a)
{
    if (!a) return;
    close(a->fd);
    free(a->path);
    free(a);
}

int brk_json_str(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = *len;
    if (!s) {
        if (n + 4 >= cap) return -1;
        memcpy(buf + n, "null", 4);
        *len = n + 4;
        return 0;
    }
    if (n + 2 >= cap) return -1;
    buf[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t el;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p, el = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            el = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else {
            esc[0] = (char)*p, el = 1;
        }
        if (n + el + 1 >= cap) return -1;
        memcpy(buf + n, esc, el);
        n += el;
    }
    buf[n++] = '"';
    *len = n;
    return 0;
}

void brk_audit_write(struct brk_audit *a, const struct brk_audit_rec *r)
{
    if (!a) return;
    char buf[16384];
    size_t n = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    n += strftime(buf, sizeof buf, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          ".%03ldZ\",\"rev\":%llu,\"tenant\":", ts.tv_nsec / 1000000,
                          (unsigned long long)r->rev);
    int bad = brk_json_str(buf, sizeof buf, &n, r->tenant);
    const char *keys[] = {"script", "action", "url", "address", "decision", "rule", "reason"};
    const char *vals[] = {r->script,   r->action, r->url,   r->address,
                          r->decision, r->rule,   r->reason};
    for (size_t i = 0; !bad && i < sizeof keys / sizeof keys[0]; i++) {
        int k = snprintf(buf + n, sizeof buf - n, ",\"%s\":", keys[i]);
        if (k < 0 || (size_t)k >= sizeof buf - n) {
            bad = 1;
            break;
        }
        n += (size_t)k;
        bad = brk_json_str(buf, sizeof buf, &n, vals[i]);
        if (!bad && i == 0) {
            k = snprintf(buf + n, sizeof buf - n, ",\"worker\":%u", r->worker);
            if (k < 0 || (size_t)k >= sizeof buf - n)
                bad = 1;
            else
                n += (size_t)k;
        }
    }
    if (bad || n + 2 > sizeof buf) {
        a->errors++;
        return;
    }
    buf[n++] = '}';
    buf[n++] = '\n';
    ssize_t w = write(a->fd, buf, n);
    if (w == (ssize_t)n)
        a->lines++;
    else
        a->errors++;
}

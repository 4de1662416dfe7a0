/* Admin socket server (in the broker's loop) and client (admin.h).
 *
 * Layer: broker/, POSIX sockets. The socket is created with mode 0600: only
 * the broker's user (and root) may use it; that is its whole access control.
 * A client gets one command per connection. Reading the command never
 * blocks the loop (epoll); the answer is written with a 1 s send timeout, so
 * a stuck local client costs at most that. */
#include "broker/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REQUEST 1024 /* bytes of one command line */
#define MAX_CLIENTS 16   /* admin clients at once */

void brk_sbuf_printf(struct brk_sbuf *s, const char *fmt, ...)
{
    if (s->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->p && (size_t)n < s->cap - s->len) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 1024;
        while (cap < s->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
}

void brk_sbuf_free(struct brk_sbuf *s)
{
    free(s->p);
    memset(s, 0, sizeof *s);
}

/* One admin client. */
struct client {
    struct brk_io io; /* first member */
    struct brk_admin *a;
    char buf[MAX_REQUEST + 1];
    size_t len;
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void client_done(struct client *c)
{
    brk_io_stop(c->a->loop, &c->io);
    close(c->io.fd);
    c->a->n_clients--;
    free(c);
}

static void on_client(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct client *c = (struct client *)io;
    ssize_t r = read(io->fd, c->buf + c->len, MAX_REQUEST - c->len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        client_done(c);
        return;
    }
    c->len += (size_t)r;
    c->buf[c->len] = 0;
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl && c->len < MAX_REQUEST) return;
    struct brk_sbuf out = {0};
    int rc;
    if (!nl) {
        brk_sbuf_printf(&out, "command line longer than %d bytes\n", MAX_REQUEST);
        rc = -1;
    } else {
        *nl = 0;
        if (nl > c->buf && nl[-1] == '\r') nl[-1] = 0;
        rc = c->a->fn(c->a->ctx, c->buf, &out);
    }
    /* The answer: blocking with a send timeout. */
    int fl = fcntl(io->fd, F_GETFL);
    fcntl(io->fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {1, 0};
    setsockopt(io->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    write_all(io->fd, rc == 0 ? "OK\n" : "ERR\n", rc == 0 ? 3 : 4);
    if (out.len) write_all(io->fd, out.p, out.len);
    if (out.oom) write_all(io->fd, "(answer truncated: out of memory)\n", 34);
    brk_sbuf_free(&out);
    client_done(c);
}

static void on_accept(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_admin *a = (struct brk_admin *)io;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct client *c = a->n_clients < MAX_CLIENTS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->a = a;
        c->io = (struct brk_io){.fd = fd, .fn = on_client};
        a->n_clients++;
        brk_io_set(loop, &c->io, EPOLLIN);
    }
}

struct brk_admin *brk_admin_listen(struct brk_loop *loop, const char *path, brk_admin_fn fn,
                                   void *ctx, char *err, size_t cap)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, cap, "admin_socket %s: path too long", path);
        return NULL;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, cap, "admin_socket %s: exists and is not a socket", path);
            return NULL;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, cap, "admin_socket %s: another broker is listening on it", path);
            return NULL;
        }
        if (probe >= 0) close(probe);
        unlink(path); /* stale */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, cap, "admin_socket: %s", strerror(errno));
        return NULL;
    }
    mode_t old = umask(077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
        snprintf(err, cap, "admin_socket %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    struct brk_admin *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        close(fd);
        unlink(path);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->fn = fn;
    a->ctx = ctx;
    a->io = (struct brk_io){.fd = fd, .fn = on_accept};
    brk_io_set(loop, &a->io, EPOLLIN);
    return a;
}

void brk_admin_close(struct brk_admin *a)
{
    if (!a) return;
    brk_io_stop(a->loop, &a->io);
    close(a->io.fd);
    unlink(a->path);
    free(a->path);
    free(a);
}

int brk_admin_request(const char *path, const char *request, FILE *out, FILE *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(err, "broker admin: %s: path too long\n", path);
        return 2;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(err, "broker admin: cannot reach the broker at %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return 2;
    }
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    write_all(fd, request, strlen(request));
    write_all(fd, "\n", 1);
    shutdown(fd, SHUT_WR);
    char buf[8192];
    int status = -1; /* -1: no status line yet */
    size_t hl = 0;
    char head[8];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        size_t off = 0;
        while (status < 0 && off < (size_t)r) {
            char ch = buf[off++];
            if (ch == '\n') {
                head[hl] = 0;
                status = !strcmp(head, "OK") ? 0 : 1;
            } else if (hl < sizeof head - 1) {
                head[hl++] = ch;
            }
        }
        if (off < (size_t)r) fwrite(buf + off, 1, (size_t)r - off, status == 0 ? out : err);
    }
    close(fd);
    if (status < 0) {
        fprintf(err, "broker admin: no answer from the broker\n");
        return 2;
    }
    return status;
}

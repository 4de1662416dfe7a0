/* The admin channel of `broker serve`: a Unix stream socket (mode 0600) that
 * takes one command line per connection and answers with "OK\n" or "ERR\n"
 * followed by text, then closes; and the `broker admin` client for it.
 *
 * Commands: status [--json], metrics, reload [revoke], stop TENANT[/SCRIPT]
 * [now], start TENANT[/SCRIPT], drain.
 *
 * Layer: broker/. The server side lives in the broker's loop (serve.c owns
 * the commands); the client is plain POSIX. */
#ifndef BRK_ADMIN_H
#define BRK_ADMIN_H

#include <stddef.h>
#include <stdio.h>

#include "broker/loop.h"

/* A growable text buffer for answers. */
struct brk_sbuf {
    char *p;    /* owned, NUL-terminated when len > 0 */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    int oom;    /* 1 after an allocation failed (text is truncated) */
};
void brk_sbuf_printf(struct brk_sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void brk_sbuf_free(struct brk_sbuf *s);

/* Handles one command line; writes the answer text to out; returns 0 (OK)
 * or -1 (ERR). */
typedef int (*brk_admin_fn)(void *ctx, char *line, struct brk_sbuf *out);

/* The listening socket. */
struct brk_admin {
    struct brk_io io;      /* listening socket (first member) */
    struct brk_loop *loop; /* the broker's loop */
    char *path;            /* owned: socket path (unlinked on close) */
    brk_admin_fn fn;       /* command handler */
    void *ctx;             /* its context */
    int n_clients;         /* clients connected now */
};

/* Creates the socket at path (a stale socket file is replaced; one that a
 * live broker answers on is an error). NULL with err on failure. */
struct brk_admin *brk_admin_listen(struct brk_loop *loop, const char *path, brk_admin_fn fn,
                                   void *ctx, char *err, size_t cap);
void brk_admin_close(struct brk_admin *a);

/* Client: sends `request` (one line) to the socket and copies the answer
 * text to out (OK) or err (ERR). Returns 0 for OK, 1 for ERR, 2 when the
 * broker cannot be reached. */
int brk_admin_request(const char *path, const char *request, FILE *out, FILE *err);

#endif

/* The audit log: one JSON object per line for every policy decision the
 * broker makes for a script (websocket.connect, websocket.connect.url, each
 * resolved address) and every quota rejection.
 *
 * Layer: broker/, plain C and POSIX I/O. Each line is written with a single
 * write(2) on an O_APPEND descriptor, so lines never interleave; a failing
 * write is counted, never fatal (the decision itself is not changed). */
#ifndef BRK_AUDIT_H
#define BRK_AUDIT_H

#include <stdint.h>
#include <stddef.h>

/* An open audit log. */
struct brk_audit {
    int fd;          /* O_APPEND descriptor (owned) */
    char *path;      /* owned */
    uint64_t lines;  /* lines written */
    uint64_t errors; /* lines lost (write failed or short) */
};

/* One record; NULL strings are written as null. */
struct brk_audit_rec {
    uint64_t rev;         /* configuration revision */
    const char *tenant;   /* tenant name */
    const char *script;   /* script name within the tenant */
    uint32_t worker;      /* worker id */
    const char *action;   /* "websocket.connect", "websocket.connect.url", "address", "quota" */
    const char *url;      /* canonical URL without userinfo and query */
    const char *address;  /* resolved address ("127.0.0.1", "::1") */
    const char *decision; /* "allow" or "deny" */
    const char *rule;     /* deciding rule label ("file:line"), quota or class rule */
    const char *reason;   /* one-line explanation */
};

/* Opens (creates, mode 0640) path for appending. NULL with err on failure. */
struct brk_audit *brk_audit_open(const char *path, char *err, size_t cap);
void brk_audit_close(struct brk_audit *a);
/* Writes one line (a may be NULL: nothing happens). */
void brk_audit_write(struct brk_audit *a, const struct brk_audit_rec *r);
/* Appends s as a JSON string (with quotes) to buf of cap bytes at *len;
 * returns -1 (and writes nothing more) when it does not fit. */
int brk_json_str(char *buf, size_t cap, size_t *len, const char *s);

#endif

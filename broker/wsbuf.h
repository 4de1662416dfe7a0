/* Growable byte FIFO used by the WebSocket core for its output (bytes waiting
 * for the socket).
 *
 * Layer: broker/. Plain C: C library only; no I/O.
 *
 * Data lives in one contiguous allocation between rd and wr, so the shell can
 * write it with a single send() call. Appending compacts or grows the
 * allocation; consuming everything rewinds to the start, so a connection
 * whose output keeps up never moves bytes. */
#ifndef WS_BUF_H
#define WS_BUF_H

#include <stddef.h>
#include <stdint.h>

struct ws_buf {
    uint8_t *data; /* owned allocation of cap bytes, NULL while empty-and-unused */
    size_t rd;     /* offset of the first pending byte */
    size_t wr;     /* offset one past the last pending byte */
    size_t cap;    /* bytes allocated at data */
};

/* Releases the allocation; the buffer is then empty and reusable. */
void ws_buf_free(struct ws_buf *b);

/* Makes room for n more bytes after wr and returns a pointer to it, or NULL
 * on OOM / overflow (the buffer is unchanged then). Call ws_buf_commit with
 * the number of bytes actually written. Pointers into the buffer are invalid
 * after the next reserve. */
uint8_t *ws_buf_reserve(struct ws_buf *b, size_t n);

static inline void ws_buf_commit(struct ws_buf *b, size_t n)
{
    b->wr += n;
}

/* Appends n bytes; 0 or -1 on OOM. */
int ws_buf_append(struct ws_buf *b, const void *p, size_t n);

static inline size_t ws_buf_len(const struct ws_buf *b)
{
    return b->wr - b->rd;
}

/* Drops n (<= ws_buf_len) bytes from the front. */
void ws_buf_consume(struct ws_buf *b, size_t n);

#endif

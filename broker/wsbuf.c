/* Growable byte FIFO (see wsbuf.h).
 *
 * Layer: broker/. C library only. */
#include "broker/wsbuf.h"

#include <stdlib.h>
#include <string.h>

void ws_buf_free(struct ws_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->rd = b->wr = b->cap = 0;
}

uint8_t *ws_buf_reserve(struct ws_buf *b, size_t n)
{
    if (b->cap - b->wr >= n) return b->data + b->wr;
    size_t len = b->wr - b->rd;
    if (n > SIZE_MAX / 4 - len) return NULL;
    if (b->cap - len >= n) {
        /* Room enough once the consumed prefix is dropped. */
        memmove(b->data, b->data + b->rd, len);
        b->rd = 0;
        b->wr = len;
        return b->data + b->wr;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < len + n)
        cap *= 2;
    uint8_t *nd = malloc(cap);
    if (!nd) return NULL;
    if (len) memcpy(nd, b->data + b->rd, len);
    free(b->data);
    b->data = nd;
    b->rd = 0;
    b->wr = len;
    b->cap = cap;
    return b->data + b->wr;
}

int ws_buf_append(struct ws_buf *b, const void *p, size_t n)
{
    uint8_t *d = ws_buf_reserve(b, n);
    if (!d) return -1;
    if (n) memcpy(d, p, n);
    b->wr += n;
    return 0;
}

void ws_buf_consume(struct ws_buf *b, size_t n)
{
    if (n > b->wr - b->rd) n = b->wr - b->rd;
    b->rd += n;
    if (b->rd == b->wr) b->rd = b->wr = 0;
}

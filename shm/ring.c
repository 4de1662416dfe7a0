/* Single-producer/single-consumer record rings in shared memory (see
 * shm/ring.h for the shape and the trust model), chunking of large messages
 * and their reassembly.
 *
 * Layer: shm/. Plain C11 atomics; must not depend on Lua, libwebsockets, the
 * sandbox or the broker's policy. Region setup lives in shm/region.c.
 *
 * Memory ordering. The producer writes a record with plain stores and makes it
 * visible with a release store of its head; the consumer acquire-loads the
 * head before reading the record. The consumer's release store of its tail
 * (after it has copied or finished with the records) pairs with the
 * producer's acquire load before it overwrites that space.
 *
 * Wake-ups without lost wake-ups. A side that finds nothing to do sets its
 * "wants" flag in its own region, then re-checks the peer's position, and only
 * sleeps (poll on its eventfd) when the re-check still shows nothing. The peer,
 * after publishing a position, checks that flag and writes the eventfd when it
 * is set. Both sides do "store A; fence(seq_cst); load B" with the roles of A
 * and B swapped (the sleeper stores the flag and loads the position; the waker
 * stores the position and loads the flag). With a seq_cst fence between the
 * store and the load on each side, the two stores cannot both be missed: in
 * the single total order of the fences, whichever fence comes second sees the
 * other side's store. So either the sleeper sees the new position and does
 * not sleep, or the waker sees the flag and writes the eventfd; an eventfd is
 * a counter, so a write that lands before the sleeper reaches poll() is not
 * lost either. Without the fences, each store could sit in its CPU's store
 * buffer while the following load reads the old value on both sides (store-load
 * reordering is allowed even on x86), and both would sleep forever.
 * The same argument covers both directions: "consumer waits for data" (flag
 * wants_data, position head) and "producer waits for room" (flag wants_space,
 * position tail). A flag left set after a wake-up only costs the waker a
 * spurious eventfd write until the sleeper clears it in *_end_wait(). */
#include "shm/ring.h"
#include "shm/proto.h"

#include <stdlib.h>
#include <string.h>

/* A compiler barrier: after copying bytes out of shared memory, the compiler
 * may not replace uses of the private copy by fresh loads from the region. */
#define COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")

static const char *const shm_err_text[] = {
#define SHM_T_(name, val, text) [val] = text,
    SHM_ERRORS(SHM_T_)
#undef SHM_T_
};

const char *shm_strerror(int code)
{
    if (code == 0) return "success";
    if (code > 0 || -code >= (int)(sizeof shm_err_text / sizeof shm_err_text[0]) ||
        !shm_err_text[-code])
        return "unknown shm error";
    return shm_err_text[-code];
}

/* Bytes a record with a payload of len bytes takes in the ring. */
static inline uint64_t rec_bytes(uint64_t len)
{
    return (SHM_REC_HDR + len + (SHM_REC_ALIGN - 1)) & ~(uint64_t)(SHM_REC_ALIGN - 1);
}

/* ---- Producer ---- */

uint32_t shm_tx_max_payload(const struct shm_tx *tx)
{
    return tx->max_payload;
}

/* Re-reads the consumer's tail once and checks it: 8-aligned, not behind the
 * last value we accepted, not past what we published. Only after that is the
 * free space it implies trusted. */
static int tx_refresh_tail(struct shm_tx *tx)
{
    uint64_t t = atomic_load_explicit(tx->peer_tail, memory_order_acquire);
    if (t < tx->tail || t > tx->published || (t & (SHM_REC_ALIGN - 1)) != 0) return SHM_EBADTAIL;
    tx->tail = t;
    return 0;
}

/* Bytes the next record of payload len needs, including the padding to the
 * end of the ring when it does not fit before the end. */
static inline uint64_t tx_need(const struct shm_tx *tx, uint32_t len, uint64_t *skip)
{
    uint64_t rec = rec_bytes(len);
    uint64_t to_end = tx->size - (tx->head & (tx->size - 1));
    *skip = rec > to_end ? to_end : 0;
    return *skip + rec;
}

int shm_tx_reserve(struct shm_tx *tx, uint32_t len, void **payload)
{
    if (len > tx->max_payload) return SHM_ETOOBIG;
    uint64_t skip;
    uint64_t need = tx_need(tx, len, &skip);
    if (tx->size - (tx->head - tx->tail) < need) {
        int rc = tx_refresh_tail(tx);
        if (rc) return rc;
        if (tx->size - (tx->head - tx->tail) < need) return SHM_EAGAIN;
    }
    if (skip) {
        /* A gap shorter than a header (8 bytes) is skipped without a record;
         * the consumer knows it cannot hold one. */
        if (skip >= SHM_REC_HDR) {
            struct shm_rec pad = {.len = (uint32_t)(skip - SHM_REC_HDR),
                                  .type = SHM_REC_PAD,
                                  .flags = 0,
                                  .conn = 0,
                                  .seq = tx->seq};
            memcpy(tx->data + (tx->head & (tx->size - 1)), &pad, sizeof pad);
        }
        tx->head += skip;
    }
    tx->reserved = tx->data + (tx->head & (tx->size - 1));
    tx->reserved_len = len;
    *payload = tx->reserved + SHM_REC_HDR;
    return 0;
}

void shm_tx_commit(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn)
{
    struct shm_rec h = {
        .len = tx->reserved_len, .type = type, .flags = flags, .conn = conn, .seq = tx->seq++};
    memcpy(tx->reserved, &h, sizeof h);
    tx->head += rec_bytes(tx->reserved_len);
    tx->reserved = NULL;
}

void shm_tx_commit_len(struct shm_tx *tx, uint32_t len, uint16_t type, uint16_t flags,
                       uint32_t conn)
{
    if (len < tx->reserved_len) tx->reserved_len = len;
    shm_tx_commit(tx, type, flags, conn);
}

int shm_tx_write(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn, const void *p,
                 uint32_t len)
{
    void *dst;
    int rc = shm_tx_reserve(tx, len, &dst);
    if (rc) return rc;
    if (len) memcpy(dst, p, len);
    shm_tx_commit(tx, type, flags, conn);
    return 0;
}

void shm_tx_publish(struct shm_tx *tx)
{
    if (tx->head == tx->published) return;
    atomic_store_explicit(tx->head_pub, tx->head, memory_order_release);
    tx->published = tx->head;
    /* Pairs with the fence in shm_rx_prepare_wait() (see the file header). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(tx->peer_wants_data, memory_order_relaxed))
        shm_efd_signal(tx->peer_efd);
}

uint64_t shm_tx_space(struct shm_tx *tx)
{
    if (tx_refresh_tail(tx)) return 0;
    return tx->size - (tx->head - tx->tail);
}

int shm_tx_prepare_wait(struct shm_tx *tx, uint32_t need)
{
    /* The consumer cannot make room for records it cannot see. */
    shm_tx_publish(tx);
    if (need > tx->max_payload) need = tx->max_payload;
    uint64_t skip;
    uint64_t bytes = tx_need(tx, need, &skip);
    atomic_store_explicit(tx->own_wants_space, 1, memory_order_relaxed);
    /* Pairs with the fence in shm_rx_release() (see the file header). */
    atomic_thread_fence(memory_order_seq_cst);
    int rc = tx_refresh_tail(tx);
    if (rc) {
        atomic_store_explicit(tx->own_wants_space, 0, memory_order_relaxed);
        return rc;
    }
    if (tx->size - (tx->head - tx->tail) >= bytes) {
        atomic_store_explicit(tx->own_wants_space, 0, memory_order_relaxed);
        return 1;
    }
    return 0;
}

void shm_tx_end_wait(struct shm_tx *tx)
{
    atomic_store_explicit(tx->own_wants_space, 0, memory_order_relaxed);
}

int shm_tx_write_chunks(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn,
                        const void *p, size_t len, size_t *done)
{
    if (len > PROTO_MAX_MESSAGE || *done > len) return SHM_ETOOBIG;
    if (len != 0 && *done == len) return 0; /* already complete */
    const uint8_t *src = p;
    uint32_t maxp = tx->max_payload;
    flags &= (uint16_t)~PROTO_F_MORE;
    do {
        size_t left = len - *done;
        uint32_t n = left > maxp ? maxp : (uint32_t)left;
        uint16_t f = flags;
        if (*done != 0) f &= (uint16_t)~PROTO_F_BEGIN;
        if (n < left) f |= PROTO_F_MORE;
        void *dst;
        int rc = shm_tx_reserve(tx, n, &dst);
        if (rc == SHM_EAGAIN) {
            shm_tx_publish(tx);
            return rc;
        }
        if (rc) return rc;
        if (n) memcpy(dst, src + *done, n);
        shm_tx_commit(tx, type, f, conn);
        *done += n;
    } while (*done < len);
    return 0;
}

/* ---- Consumer ---- */

/* Reads the producer's head once and checks it against our private state:
 * 8-aligned, not behind the last head we accepted, at most one ring ahead of
 * our tail. */
static int rx_refresh_head(struct shm_rx *rx)
{
    uint64_t h = atomic_load_explicit(rx->peer_head, memory_order_acquire);
    if (h < rx->head || h - rx->tail > rx->size || (h & (SHM_REC_ALIGN - 1)) != 0)
        return SHM_EBADHEAD;
    rx->head = h;
    return 0;
}

int shm_rx_peek(struct shm_rx *rx, const struct shm_rec **rec, const void **payload)
{
    for (;;) {
        if (rx->tail == rx->head) {
            rx->head = atomic_load_explicit(rx->peer_head, memory_order_acquire);
            if (rx->tail == rx->head) return 0;
        }
        uint64_t off = rx->tail & (rx->size - 1);
        uint64_t to_end = rx->size - off;
        if (to_end < SHM_REC_HDR) {
            rx->tail += to_end;
            continue;
        }
        const struct shm_rec *r = (const struct shm_rec *)(rx->data + off);
        if (r->type == SHM_REC_PAD) {
            rx->tail += to_end;
            continue;
        }
        *rec = r;
        *payload = r + 1;
        return 1;
    }
}

void shm_rx_consume(struct shm_rx *rx)
{
    const struct shm_rec *r = (const struct shm_rec *)(rx->data + (rx->tail & (rx->size - 1)));
    rx->tail += rec_bytes(r->len);
    rx->seq++;
}

int shm_rx_read_hdr(struct shm_rx *rx, struct shm_rec *hdr, const uint8_t **payload)
{
    int refreshed = 0;
    for (;;) {
        uint64_t avail = rx->head - rx->tail;
        if (avail == 0) {
            /* The head is read at most once per call, and only when every
             * record below the last validated head has been consumed. */
            if (refreshed) return 0;
            int rc = rx_refresh_head(rx);
            if (rc) return rc;
            refreshed = 1;
            avail = rx->head - rx->tail;
            if (avail == 0) return 0;
        }
        uint64_t off = rx->tail & (rx->size - 1);
        uint64_t to_end = rx->size - off;
        if (to_end < SHM_REC_HDR) {
            /* Too short for a header: an implicit gap. avail >= 8 (both
             * positions are 8-aligned) so the gap is within the head. */
            rx->tail += to_end;
            continue;
        }
        if (avail < SHM_REC_HDR) return SHM_EBADLEN;
        struct shm_rec h;
        memcpy(&h, rx->data + off, sizeof h);
        COMPILER_BARRIER();
        if (h.type == SHM_REC_PAD) {
            if (h.len != to_end - SHM_REC_HDR || h.seq != rx->seq || h.flags != 0 || h.conn != 0)
                return SHM_EBADPAD;
            if (avail < to_end) return SHM_EBADPAD;
            rx->tail += to_end;
            continue;
        }
        if (h.len > rx->max_payload) return SHM_EBADLEN;
        uint64_t rb = rec_bytes(h.len);
        if (rb > to_end || rb > avail) return SHM_EBADLEN;
        if (h.type >= rx->type_limit) return SHM_EBADTYPE;
        if (h.seq != rx->seq) return SHM_EBADSEQ;
        *hdr = h;
        *payload = rx->data + off + SHM_REC_HDR;
        return 1;
    }
}

void shm_rx_read_done(struct shm_rx *rx, const struct shm_rec *hdr)
{
    rx->tail += rec_bytes(hdr->len);
    rx->seq++;
}

int shm_rx_read_copy(struct shm_rx *rx, struct shm_rec *hdr, void *buf, uint32_t cap)
{
    const uint8_t *p;
    int rc = shm_rx_read_hdr(rx, hdr, &p);
    if (rc != 1) return rc;
    if (hdr->len > cap) return SHM_ETRUNC;
    if (hdr->len) memcpy(buf, p, hdr->len);
    COMPILER_BARRIER();
    shm_rx_read_done(rx, hdr);
    return 1;
}

void shm_rx_release(struct shm_rx *rx)
{
    if (rx->tail == rx->released) return;
    atomic_store_explicit(rx->tail_pub, rx->tail, memory_order_release);
    rx->released = rx->tail;
    /* Pairs with the fence in shm_tx_prepare_wait() (see the file header). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(rx->peer_wants_space, memory_order_relaxed))
        shm_efd_signal(rx->peer_efd);
}

int shm_rx_prepare_wait(struct shm_rx *rx)
{
    /* The producer may be waiting for exactly the room we have consumed. */
    shm_rx_release(rx);
    if (rx->head != rx->tail) return 1;
    atomic_store_explicit(rx->own_wants_data, 1, memory_order_relaxed);
    /* Pairs with the fence in shm_tx_publish() (see the file header). */
    atomic_thread_fence(memory_order_seq_cst);
    int rc;
    if (rx->trusted) {
        rx->head = atomic_load_explicit(rx->peer_head, memory_order_acquire);
        rc = 0;
    } else {
        rc = rx_refresh_head(rx);
    }
    if (rc || rx->head != rx->tail) {
        atomic_store_explicit(rx->own_wants_data, 0, memory_order_relaxed);
        return rc ? rc : 1;
    }
    return 0;
}

void shm_rx_end_wait(struct shm_rx *rx)
{
    atomic_store_explicit(rx->own_wants_data, 0, memory_order_relaxed);
}

/* ---- Reassembly ---- */

void shm_reasm_init(struct shm_reasm *r, size_t limit)
{
    memset(r, 0, sizeof *r);
    r->limit = limit > PROTO_MAX_MESSAGE ? PROTO_MAX_MESSAGE : limit;
}

void shm_reasm_reset(struct shm_reasm *r)
{
    r->len = 0;
    r->active = 0;
    r->complete = 0;
}

void shm_reasm_free(struct shm_reasm *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    shm_reasm_reset(r);
}

int shm_reasm_feed(struct shm_reasm *r, const struct shm_rec *hdr, const void *payload)
{
    if (r->complete) shm_reasm_reset(r);
    if (!r->active) {
        r->active = 1;
        r->type = hdr->type;
        r->conn = hdr->conn;
        r->flags = hdr->flags & (uint16_t)~PROTO_F_MORE;
    } else if (hdr->type != r->type || hdr->conn != r->conn) {
        return SHM_EBADCHUNK;
    }
    if (hdr->len > r->limit - r->len) return SHM_ETOOBIG;
    if (r->len + hdr->len > r->cap) {
        size_t ncap = r->cap ? r->cap : 4096;
        while (ncap < r->len + hdr->len)
            ncap *= 2;
        if (ncap > r->limit) ncap = r->limit;
        uint8_t *nb = realloc(r->buf, ncap ? ncap : 1);
        if (!nb) return SHM_ESYS;
        r->buf = nb;
        r->cap = ncap;
    }
    if (hdr->len) memcpy(r->buf + r->len, payload, hdr->len);
    r->len += hdr->len;
    if (hdr->flags & PROTO_F_MORE) return 0;
    r->complete = 1;
    r->active = 0;
    return 1;
}

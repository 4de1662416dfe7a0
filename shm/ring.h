/* Single-producer/single-consumer rings of variable-length records in shared
 * memory, and the pair of memfd regions that carry them between the broker and
 * one worker.
 *
 * Layer: shm/. Plain C11 atomics; no Lua, no libwebsockets, no policy.
 *
 * Shape. A link between the broker and a worker is two regions, each written
 * by one side only:
 *   region B (broker-written, sealed F_SEAL_FUTURE_WRITE|SHRINK|GROW|SEAL so
 *            the worker can map it read-only only): the broker->worker ring's
 *            data and head, the broker's consumer position (tail) of the
 *            worker->broker ring, and the broker's wake-up flags;
 *   region W (worker-written, sealed SHRINK|GROW|SEAL): the worker->broker
 *            ring's data and head, the worker's tail of the broker->worker
 *            ring, and the worker's wake-up flags.
 * Each region starts with a control block (positions and flags on separate
 * 64-byte cache lines) followed by the ring data (a power of two bytes).
 *
 * Records. Every record starts with struct shm_rec (16 bytes) and is padded to
 * 8 bytes. Positions are 64-bit and grow monotonically (never wrap in
 * practice); the offset in the data is pos & (size - 1). A record never wraps:
 * when it does not fit before the end, the producer writes a padding record
 * (type SHM_REC_PAD) up to the end and starts at offset 0.
 *
 * Publication is batched: shm_tx_commit() only advances the producer's private
 * head; shm_tx_publish() makes everything committed visible with one release
 * store and, only if the consumer has asked for it, one eventfd write. The
 * consumer side mirrors this with shm_rx_release(). A busy pair therefore makes
 * no system calls.
 *
 * Trust. The worker trusts region B. The broker trusts nothing in region W: it
 * keeps its own copy of every position, reads the worker's head and tail once
 * per call and checks them, and copies each record out once
 * (shm_rx_read_copy()) before checking its header; a check that fails returns
 * a negative SHM_E* code and the broker kills the worker. */
#ifndef SHM_RING_H
#define SHM_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Record header. len is the payload length (header excluded). */
struct shm_rec {
    uint32_t len;   /* payload bytes after this header */
    uint16_t type;  /* record type (shm/proto.h); 0 = padding */
    uint16_t flags; /* record flags (shm/proto.h PROTO_F_*) */
    uint32_t conn;  /* connection id, 0 = the worker as a whole */
    uint32_t seq;   /* producer's record counter (padding excluded), starts at 0 */
};

#define SHM_REC_PAD   0
#define SHM_REC_ALIGN 8u
#define SHM_REC_HDR   ((uint32_t)sizeof(struct shm_rec))

/* Error codes (negative returns). */
#define SHM_ERRORS(X)                                                                              \
    X(AGAIN, 1, "ring full (backpressure), try again after the consumer moves")                    \
    X(BADHEAD, 2, "peer's head position is behind our tail or more than the ring size ahead")      \
    X(BADTAIL, 3, "peer's tail position moved backwards or past our head")                         \
    X(BADLEN, 4, "record length exceeds the maximum or runs past the published head")              \
    X(BADTYPE, 5, "record type is not a known type")                                               \
    X(BADSEQ, 6, "record sequence number is not the next one")                                     \
    X(BADPAD, 7, "padding record is malformed")                                                    \
    X(TOOBIG, 8, "record payload larger than this ring's maximum")                                 \
    X(SYS, 9, "system call failed (see errno)")                                                    \
    X(BADREGION, 10, "region has the wrong size, seals or layout")                                 \
    X(TRUNC, 11, "caller's buffer is smaller than the record")                                     \
    X(BADCHUNK, 12, "chunk record does not continue the message in progress")

enum shm_err {
#define SHM_E_(name, val, text) SHM_E##name = -(val),
    SHM_ERRORS(SHM_E_)
#undef SHM_E_
};

/* Text for an SHM_E* code. */
const char *shm_strerror(int code);

/* Producer view of one ring (private memory of the producing side). */
struct shm_tx {
    uint8_t *data;                     /* ring data in own region (writable) */
    uint64_t size;                     /* bytes, power of two */
    uint64_t head;                     /* private write position (committed) */
    uint64_t published;                /* last head made visible */
    uint64_t tail;                     /* last validated consumer tail */
    uint32_t seq;                      /* next record's sequence number */
    uint32_t max_payload;              /* largest payload of one record */
    uint8_t *reserved;                 /* record being built by reserve/commit */
    uint32_t reserved_len;             /* its payload length */
    _Atomic uint64_t *head_pub;        /* own region: published head */
    const _Atomic uint64_t *peer_tail; /* peer region: consumer's tail (hostile when broker) */
    _Atomic uint32_t *own_wants_space; /* own region: set while waiting for room */
    const _Atomic uint32_t *peer_wants_data; /* peer region: consumer asleep, wants a wake-up */
    int peer_efd;                            /* eventfd that wakes the consumer */
    int trusted;                             /* 0: peer tail is hostile and validated */
};

/* Consumer view of one ring (private memory of the consuming side). */
struct shm_rx {
    const uint8_t *data;                      /* ring data in peer region (read-only) */
    uint64_t size;                            /* bytes, power of two */
    uint64_t tail;                            /* private read position */
    uint64_t released;                        /* last tail made visible */
    uint64_t head;                            /* last validated producer head */
    uint32_t seq;                             /* expected sequence number of the next record */
    uint32_t max_payload;                     /* largest payload accepted */
    uint16_t type_limit;                      /* types must be 1..type_limit-1 */
    const _Atomic uint64_t *peer_head;        /* peer region: producer's published head */
    _Atomic uint64_t *tail_pub;               /* own region: published tail */
    _Atomic uint32_t *own_wants_data;         /* own region: set while asleep */
    const _Atomic uint32_t *peer_wants_space; /* peer region: producer waits for room */
    int peer_efd;                             /* eventfd that wakes the producer */
    int trusted;                              /* 0: everything read is hostile (broker side) */
};

/* One side's end of a link: the rings, the two regions and the eventfds. */
struct shm_link {
    struct shm_tx tx; /* our ring (data in own region) */
    struct shm_rx rx; /* the peer's ring (data in peer region) */
    void *own_map;    /* own region mapping (writable; owned, unmapped by destroy) */
    size_t own_len;   /* its length in bytes */
    void *peer_map;   /* peer region mapping (read-only; owned) */
    size_t peer_len;  /* its length in bytes */
    int own_memfd;    /* fd of own region (broker keeps both until spawn), -1 when closed */
    int peer_memfd;   /* fd of the peer region, -1 when closed */
    int own_efd;      /* eventfd this side sleeps on (poll it for readability); owned */
    int peer_efd;     /* eventfd that wakes the peer; owned */
};

/* File descriptors handed to a worker, in this order: region B, region W,
 * the worker's eventfd, the broker's eventfd. */
struct shm_worker_fds {
    int region_b, region_w, efd_worker, efd_broker;
};

/* Broker side: creates both regions (ring_bytes of data each, a power of two,
 * 4 KiB..1 GiB), seals them, maps B read-write and W read-only, creates the two
 * eventfds (EFD_NONBLOCK|EFD_CLOEXEC). *fds receives the descriptors to pass to
 * the worker. Returns 0 or a negative SHM_E* code. */
int shm_link_create_broker(struct shm_link *l, size_t ring_bytes, struct shm_worker_fds *fds);

/* Worker side: maps region B read-only (after verifying it is sealed against
 * writes and resizes and has the expected layout) and region W read-write.
 * The ring size is derived from the region size. On success the two region
 * descriptors are closed (the mappings stay) and the link owns the eventfds;
 * on failure nothing is closed and *l holds nothing. */
int shm_link_attach_worker(struct shm_link *l, const struct shm_worker_fds *fds);

/* Broker side, after the worker has its copies of the region descriptors:
 * closes the link's memfds (the mappings stay). Idempotent. */
void shm_link_close_regions(struct shm_link *l);

/* Unmaps and closes everything this side holds. Idempotent; valid after any
 * create/attach call, also a failed one. */
void shm_link_destroy(struct shm_link *l);

/* ---- Producer ---- */

/* Largest payload one record may carry on this ring (a quarter of the ring,
 * at most 1 MiB). Larger messages go as chunk records (PROTO_F_MORE). */
uint32_t shm_tx_max_payload(const struct shm_tx *tx);

/* Reserves room for one record with a payload of len bytes and returns a
 * pointer to the payload in *payload (writes a padding record first if
 * needed). Returns 0, SHM_EAGAIN when the ring is full (nothing changed), or
 * SHM_ETOOBIG / SHM_EBADTAIL. At most one reservation is open at a time. */
int shm_tx_reserve(struct shm_tx *tx, uint32_t len, void **payload);

/* Completes the open reservation: writes the header and advances the private
 * head. The record is not visible until shm_tx_publish(). */
void shm_tx_commit(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn);

/* Like shm_tx_commit, but the record keeps only the first len payload bytes
 * (len <= the reserved length): a reservation filled by a short read. */
void shm_tx_commit_len(struct shm_tx *tx, uint32_t len, uint16_t type, uint16_t flags,
                       uint32_t conn);

/* reserve + memcpy + commit. */
int shm_tx_write(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn, const void *p,
                 uint32_t len);

/* Writes a message of len bytes (at most PROTO_MAX_MESSAGE) as chunk records
 * of at most shm_tx_max_payload() bytes each, starting at byte *done and
 * advancing *done past every chunk committed. Every chunk but the last carries
 * PROTO_F_MORE (a MORE bit in flags is ignored); PROTO_F_BEGIN, if given, is
 * kept on the first chunk only. An empty message is one empty record.
 * Returns 0 when the whole message is committed (not yet published: call
 * shm_tx_publish()), SHM_EAGAIN when the ring filled (what was committed is
 * published; wait for room and call again with the same p, len and *done),
 * SHM_ETOOBIG, or SHM_EBADTAIL. Do not interleave other records of the same
 * type and conn while a message is half written. */
int shm_tx_write_chunks(struct shm_tx *tx, uint16_t type, uint16_t flags, uint32_t conn,
                        const void *p, size_t len, size_t *done);

/* Makes every committed record visible (release store) and wakes the consumer
 * through its eventfd if it asked for it. Cheap when nothing is new. */
void shm_tx_publish(struct shm_tx *tx);

/* Bytes free for records right now (after re-reading the consumer's tail). */
uint64_t shm_tx_space(struct shm_tx *tx);

/* Before sleeping on own_efd waiting for room: publishes, sets the
 * wants-space flag and re-checks. need is the payload length of the record
 * the caller wants to write (clamped to the maximum). Returns 1 if
 * shm_tx_reserve(need) would succeed now (flag cleared: do not sleep), 0 to go
 * to sleep (then poll own_efd, shm_tx_end_wait(), shm_efd_drain()), or a
 * negative SHM_E* code. */
int shm_tx_prepare_wait(struct shm_tx *tx, uint32_t need);
void shm_tx_end_wait(struct shm_tx *tx);

/* ---- Consumer ---- */

/* Trusted zero-copy read (worker side): returns 1 and points *rec / *payload
 * into the ring for the next record, 0 when empty. Padding is skipped. The
 * record stays valid until shm_rx_consume(). */
int shm_rx_peek(struct shm_rx *rx, const struct shm_rec **rec, const void **payload);
void shm_rx_consume(struct shm_rx *rx);

/* Hostile read (broker side): copies the next record's header into *hdr and
 * its payload into buf (capacity cap) with each byte read from shared memory
 * exactly once, then validates: head sane, length <= max_payload and within
 * the published head, type 1..type_limit-1, sequence number the expected one,
 * padding well-formed. Returns 1 with the record consumed (private tail
 * advanced), 0 when empty, or a negative SHM_E* code (the worker is broken or
 * hostile; the link must not be used again). cap must be >= max_payload. */
int shm_rx_read_copy(struct shm_rx *rx, struct shm_rec *hdr, void *buf, uint32_t cap);

/* shm_rx_read_copy in two steps, for payloads the broker passes through
 * without deciding anything from them: shm_rx_read_hdr copies and validates
 * the next record's header exactly like shm_rx_read_copy and points *payload
 * at its bytes in shared memory, which the worker can still change: read each
 * at most once (a masking copy), never validate them in place. Returns as
 * shm_rx_read_copy (nothing consumed yet); shm_rx_read_done then consumes the
 * record (private tail). */
int shm_rx_read_hdr(struct shm_rx *rx, struct shm_rec *hdr, const uint8_t **payload);
void shm_rx_read_done(struct shm_rx *rx, const struct shm_rec *hdr);

/* Publishes the private tail (release store) and wakes the producer through
 * its eventfd if it waits for room. */
void shm_rx_release(struct shm_rx *rx);

/* Before sleeping on own_efd waiting for records: releases, sets the
 * wants-data flag and re-checks. Returns 1 if a record is already there (flag
 * cleared), 0 to sleep (then poll own_efd, shm_rx_end_wait(),
 * shm_efd_drain()), negative SHM_E* on a bad peer head. */
int shm_rx_prepare_wait(struct shm_rx *rx);
void shm_rx_end_wait(struct shm_rx *rx);

/* ---- Reassembly of chunked messages (consumer side) ---- */

/* One message being collected from chunk records (one per stream: keep one
 * per connection if chunks of several connections interleave). */
struct shm_reasm {
    uint8_t *buf;   /* message bytes (owned, malloc'd, grows up to limit) */
    size_t len;     /* bytes collected so far */
    size_t cap;     /* bytes allocated in buf */
    size_t limit;   /* largest message accepted, <= PROTO_MAX_MESSAGE */
    uint16_t type;  /* record type of the message being collected */
    uint16_t flags; /* flags of its first chunk, PROTO_F_MORE cleared */
    uint32_t conn;  /* its connection id */
    int active;     /* 1 while a message is half collected */
    int complete;   /* 1 after feed returned 1, until the next feed/reset */
};

void shm_reasm_init(struct shm_reasm *r, size_t limit);

/* Appends one validated record (header and payload as returned by
 * shm_rx_read_copy or shm_rx_peek). Returns 1 when the message is complete
 * (buf/len/type/flags/conn describe it until the next feed or reset), 0 when
 * more chunks must follow, SHM_ETOOBIG past limit, SHM_EBADCHUNK when type or
 * conn differ from the message in progress, SHM_ESYS when out of memory. */
int shm_reasm_feed(struct shm_reasm *r, const struct shm_rec *hdr, const void *payload);

/* Drops a message in progress (keeps the buffer). */
void shm_reasm_reset(struct shm_reasm *r);

/* Frees the buffer. */
void shm_reasm_free(struct shm_reasm *r);

/* Drains an eventfd (non-blocking); returns the counter read or 0. */
uint64_t shm_efd_drain(int efd);

/* Writes 1 to an eventfd. */
void shm_efd_signal(int efd);

#endif

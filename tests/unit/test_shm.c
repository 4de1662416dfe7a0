/* CUnit suite for shm/: region sealing and attach checks, ring wrap-around at
 * every offset, full/empty transitions, chunked messages across threads, two
 * real processes on the wake-up path, and a hostile worker against the
 * broker's reading (shm_rx_read_copy) and writing (tail validation) sides.
 *
 * Layer: tests of shm/ only; no Lua, no libwebsockets. */
#include "shm/ring.h"
#include "shm/proto.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMALL_RING 4096u

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rec_bytes(uint32_t len)
{
    return (SHM_REC_HDR + (uint64_t)len + 7) & ~(uint64_t)7;
}

static uint8_t pat(uint64_t idx, uint32_t j)
{
    return (uint8_t)(idx * 131u + j * 7u + (idx >> 8));
}

static void fill(uint8_t *p, uint64_t idx, uint32_t len)
{
    for (uint32_t j = 0; j < len; j++)
        p[j] = pat(idx, j);
}

static int check_fill(const uint8_t *p, uint64_t idx, uint32_t len)
{
    for (uint32_t j = 0; j < len; j++)
        if (p[j] != pat(idx, j)) return 0;
    return 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A broker link and a worker link attached to it in this process. The worker
 * gets duplicates of the descriptors, as an exec'd worker would. */
static int make_pair(struct shm_link *b, struct shm_link *w, size_t ring)
{
    struct shm_worker_fds fds;
    int rc = shm_link_create_broker(b, ring, &fds);
    if (rc) return rc;
    struct shm_worker_fds wf = {dup(fds.region_b), dup(fds.region_w), dup(fds.efd_worker),
                                dup(fds.efd_broker)};
    rc = shm_link_attach_worker(w, &wf);
    if (rc) {
        close(wf.region_b);
        close(wf.region_w);
        close(wf.efd_worker);
        close(wf.efd_broker);
        shm_link_destroy(b);
    }
    return rc;
}

static void free_pair(struct shm_link *b, struct shm_link *w)
{
    shm_link_destroy(w);
    shm_link_destroy(b);
}

static int poll_efd(int efd, int ms)
{
    struct pollfd p = {.fd = efd, .events = POLLIN};
    return poll(&p, 1, ms);
}

/* ---- regions ---- */

static void test_seals(void)
{
    struct shm_link b;
    struct shm_worker_fds fds;
    CU_ASSERT_EQUAL_FATAL(shm_link_create_broker(&b, SMALL_RING, &fds), 0);
    struct stat st;
    CU_ASSERT_EQUAL(fstat(fds.region_b, &st), 0);
    size_t len = (size_t)st.st_size;
    CU_ASSERT(len > SMALL_RING);

    /* Region B: no new writable mapping, no mprotect to writable, no resize,
     * no write(2), no further seal changes. */
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds.region_b, 0);
    CU_ASSERT_EQUAL(m, MAP_FAILED);
    if (m != MAP_FAILED) munmap(m, len);
    m = mmap(NULL, len, PROT_READ, MAP_SHARED, fds.region_b, 0);
    CU_ASSERT_NOT_EQUAL_FATAL(m, MAP_FAILED);
    CU_ASSERT_NOT_EQUAL(mprotect(m, len, PROT_READ | PROT_WRITE), 0);
    munmap(m, len);
    CU_ASSERT_NOT_EQUAL(ftruncate(fds.region_b, 0), 0);
    CU_ASSERT_NOT_EQUAL(ftruncate(fds.region_b, (off_t)len * 2), 0);
    char c = 1;
    CU_ASSERT_NOT_EQUAL(pwrite(fds.region_b, &c, 1, 0), 1);
    CU_ASSERT_NOT_EQUAL(fcntl(fds.region_b, F_ADD_SEALS, F_SEAL_WRITE), 0);

    /* Region W: writable for the worker but cannot shrink or grow. */
    CU_ASSERT_NOT_EQUAL(ftruncate(fds.region_w, 0), 0);
    CU_ASSERT_NOT_EQUAL(ftruncate(fds.region_w, (off_t)len * 2), 0);
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds.region_w, 0);
    CU_ASSERT_NOT_EQUAL(m, MAP_FAILED);
    if (m != MAP_FAILED) munmap(m, len);

    /* The broker's own writable mapping of B keeps working after sealing. */
    CU_ASSERT_EQUAL(shm_tx_write(&b.tx, PROTO_MSG, 0, 1, "hi", 2), 0);
    shm_tx_publish(&b.tx);
    shm_link_destroy(&b);
    shm_link_destroy(&b); /* idempotent */
}

/* Makes a memfd of `bytes` whose first 16 bytes are `head16`, with `seals`. */
static int fake_region(size_t bytes, const void *head16, int seals)
{
    int fd = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)bytes) != 0 || pwrite(fd, head16, 16, 0) != 16) {
        close(fd);
        return -1;
    }
    if (seals && fcntl(fd, F_ADD_SEALS, seals) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int try_attach(int rb, int rw)
{
    struct shm_worker_fds wf = {rb, rw, -1, -1};
    struct shm_link l;
    int rc = shm_link_attach_worker(&l, &wf);
    if (rc == 0) shm_link_destroy(&l);
    return rc;
}

static void test_attach_rejects(void)
{
    struct shm_link b;
    struct shm_worker_fds fds;
    CU_ASSERT_EQUAL(shm_link_create_broker(&b, 1000, &fds), SHM_EBADREGION);
    shm_link_destroy(&b);
    CU_ASSERT_EQUAL(shm_link_create_broker(&b, 2048, &fds), SHM_EBADREGION);
    shm_link_destroy(&b);
    CU_ASSERT_EQUAL(shm_link_create_broker(&b, 3 * 4096, &fds), SHM_EBADREGION);
    shm_link_destroy(&b);

    CU_ASSERT_EQUAL_FATAL(shm_link_create_broker(&b, SMALL_RING, &fds), 0);
    struct stat st;
    fstat(fds.region_b, &st);
    size_t total = (size_t)st.st_size;
    uint8_t head[16], bad_head[16];
    CU_ASSERT_EQUAL(pread(fds.region_b, head, 16, 0), 16);
    memcpy(bad_head, head, 16);
    bad_head[0] ^= 0xff;
    const int sb = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL;
    const int sw = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    uint8_t zero[16] = {0};

    int good_b = fake_region(total, head, sb), good_w = fake_region(total, zero, sw);
    int unsealed_b = fake_region(total, head, 0), unsealed_w = fake_region(total, zero, 0);
    int nofw_b = fake_region(total, head, sw);
    int fw_w = fake_region(total, zero, sb);
    int odd_b = fake_region(total + 8, head, sb), odd_w = fake_region(total + 8, zero, sw);
    int big_b = fake_region(SMALL_RING * 2 + total - SMALL_RING, head, sb);
    int tiny_b = fake_region(4096, head, sb);
    int magic_b = fake_region(total, bad_head, sb);
    int pfd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(pfd), 0);
    CU_ASSERT_FATAL(good_b >= 0 && good_w >= 0 && unsealed_b >= 0 && unsealed_w >= 0 &&
                    nofw_b >= 0 && fw_w >= 0 && odd_b >= 0 && odd_w >= 0 && big_b >= 0 &&
                    tiny_b >= 0 && magic_b >= 0);

    CU_ASSERT_EQUAL(try_attach(unsealed_b, good_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(good_b, unsealed_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(nofw_b, good_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(good_b, fw_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(odd_b, good_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(good_b, odd_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(big_b, good_w), SHM_EBADREGION); /* B and W differ */
    CU_ASSERT_EQUAL(try_attach(tiny_b, good_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(magic_b, good_w), SHM_EBADREGION);
    CU_ASSERT_EQUAL(try_attach(pfd[0], good_w), SHM_EBADREGION);
    /* Failed attaches close nothing. */
    CU_ASSERT(fcntl(good_b, F_GETFD) >= 0 && fcntl(good_w, F_GETFD) >= 0);
    /* The genuine pair attaches (and the attach closes the region fds). */
    CU_ASSERT_EQUAL(try_attach(good_b, good_w), 0);
    CU_ASSERT(fcntl(good_b, F_GETFD) < 0 && fcntl(good_w, F_GETFD) < 0);

    int fds_[] = {unsealed_b, unsealed_w, nofw_b,  fw_w,   odd_b, odd_w,
                  big_b,      tiny_b,     magic_b, pfd[0], pfd[1]};
    for (size_t i = 0; i < sizeof fds_ / sizeof fds_[0]; i++)
        close(fds_[i]);
    shm_link_close_regions(&b);
    CU_ASSERT_EQUAL(b.own_memfd, -1);
    shm_link_destroy(&b);
}

static void test_pair_wiring(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, 1u << 16), 0);
    CU_ASSERT_EQUAL(b.tx.size, 1u << 16);
    CU_ASSERT_EQUAL(w.tx.size, 1u << 16);
    CU_ASSERT_EQUAL(b.rx.max_payload, (1u << 16) / 4);
    CU_ASSERT_EQUAL(b.rx.type_limit, PROTO_TYPE_LIMIT);
    CU_ASSERT_EQUAL(b.tx.trusted, 0);
    CU_ASSERT_EQUAL(w.rx.trusted, 1);
    CU_ASSERT_EQUAL(w.own_memfd, -1);
    free_pair(&b, &w);
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, 1u << 24), 0);
    CU_ASSERT_EQUAL(b.tx.max_payload, 1u << 20); /* capped at 1 MiB */
    CU_ASSERT_EQUAL(w.rx.max_payload, 1u << 20);
    free_pair(&b, &w);
}

static void test_strerror(void)
{
    CU_ASSERT_STRING_EQUAL(shm_strerror(0), "success");
    CU_ASSERT(strstr(shm_strerror(SHM_EAGAIN), "full") != NULL);
    CU_ASSERT(strstr(shm_strerror(SHM_EBADCHUNK), "chunk") != NULL);
    CU_ASSERT_STRING_EQUAL(shm_strerror(-999), "unknown shm error");
    CU_ASSERT_STRING_EQUAL(shm_strerror(5), "unknown shm error");
}

/* ---- wrap-around ---- */

/* Reads one record on either side: the hostile copy path or the trusted
 * zero-copy path. Returns 1/0/negative like shm_rx_read_copy. */
static int read_one(struct shm_rx *rx, int hostile, struct shm_rec *h, uint8_t *buf)
{
    if (hostile) return shm_rx_read_copy(rx, h, buf, rx->max_payload);
    const struct shm_rec *r;
    const void *p;
    int rc = shm_rx_peek(rx, &r, &p);
    if (rc != 1) return rc;
    *h = *r;
    memcpy(buf, p, r->len);
    shm_rx_consume(rx);
    return 1;
}

static void wrap_dir(struct shm_tx *tx, struct shm_rx *rx, int hostile)
{
    const uint64_t size = tx->size, mask = size - 1;
    const uint32_t maxp = tx->max_payload;
    const uint64_t rb_max = rec_bytes(maxp);
    uint8_t *pad_seen = calloc(size / 8, 1), *fit_seen = calloc(size / 8, 1);
    uint8_t *src = malloc(maxp), *dst = malloc(maxp);
    uint64_t rng = 0x1234567;
    uint64_t wr = 0, rd = 0, bad = 0;
    for (uint64_t iter = 0; iter < 400000; iter++) {
        int batch = 1 + (int)(rng_next(&rng) % 6);
        for (int k = 0; k < batch; k++) {
            uint32_t len;
            if (wr <= maxp)
                len = (uint32_t)wr; /* every length once */
            else if (rng_next(&rng) & 1)
                len = maxp - (uint32_t)(rng_next(&rng) % 64);
            else
                len = (uint32_t)(rng_next(&rng) % (maxp + 1));
            uint64_t off = tx->head & mask, to_end = size - off;
            uint64_t head0 = tx->head;
            fill(src, wr, len);
            int rc = shm_tx_write(tx, (uint16_t)(1 + wr % 40), (uint16_t)(wr & 3), (uint32_t)wr,
                                  src, len);
            if (rc == SHM_EAGAIN) break;
            if (rc != 0) {
                bad++;
                break;
            }
            if (rec_bytes(len) > to_end) {
                pad_seen[off / 8] = 1;
                if (tx->head - head0 != to_end + rec_bytes(len)) bad++;
            } else if (rec_bytes(len) == to_end) {
                fit_seen[off / 8] = 1;
            }
            wr++;
        }
        shm_tx_publish(tx);
        struct shm_rec h;
        int rc;
        while ((rc = read_one(rx, hostile, &h, dst)) == 1) {
            uint32_t len = h.len;
            if (h.type != 1 + rd % 40 || h.flags != (rd & 3) || h.conn != (uint32_t)rd ||
                h.seq != (uint32_t)rd || !check_fill(dst, rd, len))
                bad++;
            rd++;
        }
        if (rc != 0) bad++;
        shm_rx_release(rx);
        if (bad) break;
        if (wr > maxp + 1 && (iter & 255) == 0) {
            int done = 1;
            for (uint64_t te = 8; te < rb_max && done; te += 8)
                if (!pad_seen[(size - te) / 8]) done = 0;
            if (done) break;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rd, wr);
    CU_ASSERT(wr > maxp);
    /* A padding record (or the 8-byte gap) happened at every offset where
     * one can, i.e. everywhere less than the largest record before the end. */
    uint64_t missing = 0;
    for (uint64_t te = 8; te < rb_max; te += 8)
        if (!pad_seen[(size - te) / 8]) missing++;
    CU_ASSERT_EQUAL(missing, 0);
    uint64_t fits = 0;
    for (uint64_t te = 16; te <= rb_max; te += 8)
        fits += fit_seen[(size - te) / 8];
    CU_ASSERT(fits > 0);
    free(pad_seen);
    free(fit_seen);
    free(src);
    free(dst);
}

static void test_wrap_every_offset(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    wrap_dir(&w.tx, &b.rx, 1); /* worker -> broker, hostile reader */
    wrap_dir(&b.tx, &w.rx, 0); /* broker -> worker, trusted reader */
    free_pair(&b, &w);
}

/* ---- full / empty ---- */

static void full_empty_dir(struct shm_tx *tx, int tx_efd, struct shm_rx *rx, int hostile)
{
    uint8_t buf[1024], dst[1024];
    struct shm_rec h;
    void *p;
    memset(buf, 0x5a, sizeof buf);
    CU_ASSERT_EQUAL(read_one(rx, hostile, &h, dst), 0); /* empty */
    CU_ASSERT_EQUAL(shm_tx_space(tx), tx->size);
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, tx->max_payload + 1, &p), SHM_ETOOBIG);
    /* 48-byte payloads make 64-byte records: exactly size/64 fit. */
    uint64_t n = 0;
    while (shm_tx_write(tx, PROTO_LOG, 0, 0, buf, 48) == 0)
        n++;
    CU_ASSERT_EQUAL(n, tx->size / 64);
    CU_ASSERT_EQUAL(shm_tx_space(tx), 0);
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, 0, &p), SHM_EAGAIN);
    CU_ASSERT_EQUAL(shm_tx_prepare_wait(tx, 48), 0); /* also publishes */
    CU_ASSERT_EQUAL(read_one(rx, hostile, &h, dst), 1);
    /* Consumed but not released: still full for the producer. */
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, 48, &p), SHM_EAGAIN);
    CU_ASSERT_EQUAL(poll_efd(tx_efd, 0), 0);
    shm_rx_release(rx); /* the producer asked for room: wake it */
    CU_ASSERT_EQUAL(poll_efd(tx_efd, 0), 1);
    shm_tx_end_wait(tx);
    CU_ASSERT_EQUAL(shm_efd_drain(tx_efd), 1);
    CU_ASSERT_EQUAL(shm_tx_prepare_wait(tx, 48), 1);
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, 49, &p), SHM_EAGAIN); /* 72 bytes do not fit */
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, 48, &p), 0);
    shm_tx_commit(tx, PROTO_LOG, 0, 0);
    CU_ASSERT_EQUAL(shm_tx_reserve(tx, 0, &p), SHM_EAGAIN);
    shm_tx_publish(tx);
    uint64_t got = 0;
    while (read_one(rx, hostile, &h, dst) == 1)
        got++;
    CU_ASSERT_EQUAL(got, n);
    CU_ASSERT_EQUAL(shm_rx_prepare_wait(rx), 0); /* empty: would sleep */
    shm_rx_end_wait(rx);
    shm_rx_release(rx);
    CU_ASSERT_EQUAL(shm_tx_space(tx), tx->size);
}

static void test_full_empty(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    full_empty_dir(&w.tx, w.own_efd, &b.rx, 1);
    full_empty_dir(&b.tx, b.own_efd, &w.rx, 0);
    /* No stray wake-ups were left behind. */
    CU_ASSERT_EQUAL(shm_efd_drain(b.own_efd), 0);
    CU_ASSERT_EQUAL(shm_efd_drain(w.own_efd), 0);
    free_pair(&b, &w);
}

/* shm_tx_commit_len: a reservation filled only in part (a short socket read
 * in the broker's direct payload reads) becomes a record of that length, and
 * the ring space it did not use is free for the next record. */
static void test_commit_len(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    struct shm_tx *tx = &b.tx;
    uint8_t *dst = malloc(tx->max_payload);
    struct shm_rec h;
    void *p;
    uint64_t space = shm_tx_space(tx);
    CU_ASSERT_EQUAL_FATAL(shm_tx_reserve(tx, 1000, &p), 0);
    memset(p, 0x42, 37);
    shm_tx_commit_len(tx, 37, PROTO_MSG, PROTO_F_MORE, 9);
    CU_ASSERT_EQUAL(shm_tx_space(tx), space - (SHM_REC_HDR + 40)); /* 37 rounded to 8 */
    CU_ASSERT_EQUAL_FATAL(shm_tx_reserve(tx, 5, &p), 0);
    memcpy(p, "tail!", 5);
    shm_tx_commit_len(tx, 9999, PROTO_MSG, 0, 9); /* longer than reserved: keeps 5 */
    /* a reservation that is never committed writes nothing */
    CU_ASSERT_EQUAL_FATAL(shm_tx_reserve(tx, 64, &p), 0);
    memset(p, 0x77, 64);
    shm_tx_publish(tx);
    CU_ASSERT_EQUAL(read_one(&w.rx, 0, &h, dst), 1);
    CU_ASSERT(h.len == 37 && h.type == PROTO_MSG && h.flags == PROTO_F_MORE && h.conn == 9);
    CU_ASSERT(dst[0] == 0x42 && dst[36] == 0x42);
    CU_ASSERT_EQUAL(read_one(&w.rx, 0, &h, dst), 1);
    CU_ASSERT(h.len == 5 && h.flags == 0 && memcmp(dst, "tail!", 5) == 0);
    CU_ASSERT_EQUAL(read_one(&w.rx, 0, &h, dst), 0);
    free(dst);
    free_pair(&b, &w);
}

/* A sleeping consumer is woken by publish, a sleeping producer by release. */
static void test_wakeup_flags(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    CU_ASSERT_EQUAL(shm_rx_prepare_wait(&b.rx), 0);
    CU_ASSERT_EQUAL(poll_efd(b.own_efd, 0), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&w.tx, PROTO_LOG, 0, 0, "x", 1), 0);
    CU_ASSERT_EQUAL(poll_efd(b.own_efd, 0), 0); /* committed is not published */
    shm_tx_publish(&w.tx);
    CU_ASSERT_EQUAL(poll_efd(b.own_efd, 0), 1);
    shm_rx_end_wait(&b.rx);
    CU_ASSERT_EQUAL(shm_efd_drain(b.own_efd), 1);
    /* Busy pair: no flag, no eventfd write. */
    CU_ASSERT_EQUAL(shm_tx_write(&w.tx, PROTO_LOG, 0, 0, "y", 1), 0);
    shm_tx_publish(&w.tx);
    CU_ASSERT_EQUAL(poll_efd(b.own_efd, 0), 0);
    /* Data already there: prepare_wait says do not sleep and leaves no flag. */
    CU_ASSERT_EQUAL(shm_rx_prepare_wait(&b.rx), 1);
    CU_ASSERT_EQUAL(atomic_load(w.rx.peer_wants_space) + atomic_load(b.rx.own_wants_data), 0);
    free_pair(&b, &w);
}

/* ---- chunked messages across threads ---- */

struct chunk_job {
    struct shm_tx *tx;   /* sending side */
    int efd;             /* sender's own eventfd */
    const uint8_t *msg;  /* message */
    size_t len;          /* its length */
    int rc;              /* result */
    unsigned long waits; /* times the sender slept */
};

static void *chunk_sender(void *arg)
{
    struct chunk_job *j = arg;
    size_t done = 0;
    for (;;) {
        int rc = shm_tx_write_chunks(j->tx, PROTO_SEND, PROTO_F_BEGIN | PROTO_F_BINARY, 7, j->msg,
                                     j->len, &done);
        if (rc == 0) {
            shm_tx_publish(j->tx);
            j->rc = 0;
            return NULL;
        }
        if (rc != SHM_EAGAIN) {
            j->rc = rc;
            return NULL;
        }
        int w = shm_tx_prepare_wait(j->tx, j->tx->max_payload);
        if (w < 0) {
            j->rc = w;
            return NULL;
        }
        if (w == 0) {
            j->waits++;
            if (poll_efd(j->efd, 5000) != 1) {
                j->rc = -1000; /* lost wake-up */
                return NULL;
            }
            shm_tx_end_wait(j->tx);
            shm_efd_drain(j->efd);
        }
    }
}

/* Receives one chunked message on rx; returns 1 when complete. */
static int chunk_receive(struct shm_rx *rx, int hostile, int efd, struct shm_reasm *ra,
                         unsigned long *chunks)
{
    uint8_t *buf = malloc(rx->max_payload);
    int result = -1;
    for (;;) {
        struct shm_rec h;
        int rc = read_one(rx, hostile, &h, buf);
        if (rc < 0) break;
        if (rc == 1) {
            (*chunks)++;
            if ((*chunks & 7) == 0) shm_rx_release(rx);
            int f = shm_reasm_feed(ra, &h, buf);
            if (f < 0) break;
            if (f == 1) {
                result = 1;
                break;
            }
            continue;
        }
        int w = shm_rx_prepare_wait(rx);
        if (w < 0) break;
        if (w == 0) {
            if (poll_efd(efd, 5000) != 1) break;
            shm_rx_end_wait(rx);
            shm_efd_drain(efd);
        }
    }
    shm_rx_release(rx);
    free(buf);
    return result;
}

static void chunk_dir(struct shm_tx *tx, int tx_efd, struct shm_rx *rx, int rx_efd, int hostile)
{
    const size_t len = 3u << 20;
    uint8_t *msg = malloc(len);
    for (size_t i = 0; i < len; i++)
        msg[i] = (uint8_t)(i * 2654435761u >> 13);
    struct chunk_job j = {.tx = tx, .efd = tx_efd, .msg = msg, .len = len};
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, chunk_sender, &j), 0);
    struct shm_reasm ra;
    shm_reasm_init(&ra, PROTO_MAX_MESSAGE);
    unsigned long chunks = 0;
    CU_ASSERT_EQUAL(chunk_receive(rx, hostile, rx_efd, &ra, &chunks), 1);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(j.rc, 0);
    CU_ASSERT_EQUAL(chunks, (len + tx->max_payload - 1) / tx->max_payload);
    CU_ASSERT_EQUAL(ra.len, len);
    CU_ASSERT_EQUAL(ra.type, PROTO_SEND);
    CU_ASSERT_EQUAL(ra.conn, 7);
    CU_ASSERT_EQUAL(ra.flags, PROTO_F_BEGIN | PROTO_F_BINARY);
    if (ra.len == len)
        CU_ASSERT_EQUAL(fnv(0xcbf29ce484222325ULL, ra.buf, len),
                        fnv(0xcbf29ce484222325ULL, msg, len));
    shm_reasm_free(&ra);
    free(msg);
}

static void test_chunks_threads(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, 1u << 16), 0);
    chunk_dir(&w.tx, w.own_efd, &b.rx, b.own_efd, 1);
    chunk_dir(&b.tx, b.own_efd, &w.rx, w.own_efd, 0);
    free_pair(&b, &w);
}

static void test_chunk_flags_and_reasm(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    uint8_t msg[2500], buf[1024];
    memset(msg, 3, sizeof msg);
    size_t done = 0;
    /* 1024-byte chunks: three chunks; BEGIN only on the first, MORE on all
     * but the last, a caller's MORE ignored. */
    CU_ASSERT_EQUAL(shm_tx_write_chunks(&w.tx, PROTO_SEND, PROTO_F_BEGIN | PROTO_F_MORE, 3, msg,
                                        sizeof msg, &done),
                    0);
    CU_ASSERT_EQUAL(done, sizeof msg);
    uint64_t head_before = w.tx.head;
    CU_ASSERT_EQUAL(shm_tx_write_chunks(&w.tx, PROTO_SEND, 0, 3, msg, sizeof msg, &done), 0);
    CU_ASSERT_EQUAL(w.tx.head, head_before); /* complete: nothing more written */
    shm_tx_publish(&w.tx);
    struct shm_rec h[3];
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h[i], buf, sizeof buf), 1);
    CU_ASSERT_EQUAL(h[0].flags, PROTO_F_BEGIN | PROTO_F_MORE);
    CU_ASSERT_EQUAL(h[1].flags, PROTO_F_MORE);
    CU_ASSERT_EQUAL(h[2].flags, 0);
    CU_ASSERT_EQUAL(h[2].len, 2500 - 2048);
    /* An empty message is one empty record. */
    done = 0;
    CU_ASSERT_EQUAL(shm_tx_write_chunks(&w.tx, PROTO_LOG, 0, 0, "", 0, &done), 0);
    shm_tx_publish(&w.tx);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h[0], buf, sizeof buf), 1);
    CU_ASSERT_EQUAL(h[0].len, 0);
    CU_ASSERT_EQUAL(h[0].flags, 0);
    /* Ring too small for a message: EAGAIN, then resume from *done. */
    uint8_t *big = malloc(10000);
    for (int i = 0; i < 10000; i++)
        big[i] = (uint8_t)i;
    done = 0;
    CU_ASSERT_EQUAL(shm_tx_write_chunks(&w.tx, PROTO_SEND, 0, 1, big, 10000, &done), SHM_EAGAIN);
    CU_ASSERT(done > 0 && done < 10000);
    struct shm_reasm ra;
    shm_reasm_init(&ra, 1u << 20);
    int rounds = 0, fin = 0;
    while (!fin && rounds++ < 100) {
        int rc = shm_tx_write_chunks(&w.tx, PROTO_SEND, 0, 1, big, 10000, &done);
        CU_ASSERT(rc == 0 || rc == SHM_EAGAIN);
        shm_tx_publish(&w.tx);
        struct shm_rec hh;
        while (shm_rx_read_copy(&b.rx, &hh, buf, sizeof buf) == 1)
            if (shm_reasm_feed(&ra, &hh, buf) == 1) fin = 1;
        shm_rx_release(&b.rx);
    }
    CU_ASSERT_EQUAL(fin, 1);
    CU_ASSERT_EQUAL(ra.len, 10000);
    CU_ASSERT(ra.len == 10000 && memcmp(ra.buf, big, 10000) == 0);
    /* Too big for the protocol. */
    done = 0;
    CU_ASSERT_EQUAL(
        shm_tx_write_chunks(&w.tx, PROTO_SEND, 0, 1, big, PROTO_MAX_MESSAGE + 1ul, &done),
        SHM_ETOOBIG);
    free(big);

    /* Reassembly rules: other conn mid-message, limit. */
    struct shm_rec c1 = {.len = 10, .type = PROTO_SEND, .flags = PROTO_F_MORE, .conn = 1};
    struct shm_rec c2 = {.len = 10, .type = PROTO_SEND, .flags = 0, .conn = 2};
    struct shm_rec c3 = {.len = 10, .type = PROTO_MSG, .flags = 0, .conn = 1};
    shm_reasm_reset(&ra);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c1, msg), 0);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c2, msg), SHM_EBADCHUNK);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c3, msg), SHM_EBADCHUNK);
    shm_reasm_free(&ra);
    shm_reasm_init(&ra, 25);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c1, msg), 0);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c1, msg), 0);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c1, msg), SHM_ETOOBIG);
    CU_ASSERT(ra.cap <= 25);
    shm_reasm_reset(&ra);
    c1.flags = 0;
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c1, msg), 1);
    CU_ASSERT_EQUAL(shm_reasm_feed(&ra, &c2, msg), 1); /* new message after complete */
    CU_ASSERT_EQUAL(ra.conn, 2);
    CU_ASSERT_EQUAL(ra.len, 10);
    shm_reasm_free(&ra);
    free_pair(&b, &w);
}

/* ---- two processes ---- */

#define XP_RECORDS 5000000ull /* per direction: 10 million exchanged */

struct xp_side {
    struct shm_tx *tx;
    struct shm_rx *rx;
    int hostile; /* 1: read with shm_rx_read_copy */
    int efd;     /* own eventfd */
    uint64_t sent, recvd;
    uint64_t sum_tx, sum_rx; /* FNV over payloads sent / received */
    uint64_t sleeps, timeouts, errors;
    uint64_t pause_every; /* sleep 1 ms every so many records sent (0: never) */
};

static uint32_t xp_len(uint64_t i)
{
    return 8 + (uint32_t)(i % 57);
}

static void xp_run(struct xp_side *s)
{
    uint8_t src[64], dst[4096];
    int spins = 0;
    s->sum_tx = s->sum_rx = 0xcbf29ce484222325ULL;
    while (s->sent < XP_RECORDS || s->recvd < XP_RECORDS) {
        int progress = 0;
        for (int k = 0; k < 64 && s->sent < XP_RECORDS; k++) {
            uint32_t len = xp_len(s->sent);
            void *p;
            int rc = shm_tx_reserve(s->tx, len, &p);
            if (rc == SHM_EAGAIN) break;
            if (rc) {
                s->errors++;
                return;
            }
            fill(src, s->sent, len);
            memcpy(p, src, len);
            shm_tx_commit(s->tx, PROTO_LOG, 0, (uint32_t)s->sent);
            s->sum_tx = fnv(s->sum_tx, src, len);
            s->sent++;
            progress = 1;
            if (s->pause_every && s->sent % s->pause_every == 0) {
                shm_tx_publish(s->tx);
                usleep(1000);
            }
        }
        shm_tx_publish(s->tx);
        for (int k = 0; k < 128 && s->recvd < XP_RECORDS; k++) {
            struct shm_rec h;
            int rc = read_one(s->rx, s->hostile, &h, dst);
            if (rc == 0) break;
            if (rc < 0 || h.len != xp_len(s->recvd) || h.conn != (uint32_t)s->recvd ||
                !check_fill(dst, s->recvd, h.len)) {
                s->errors++;
                return;
            }
            s->sum_rx = fnv(s->sum_rx, dst, h.len);
            s->recvd++;
            progress = 1;
        }
        shm_rx_release(s->rx);
        if (progress) {
            spins = 0;
            continue;
        }
        if (++spins < 32) continue;
        spins = 0;
        int ready = 0;
        if (s->recvd < XP_RECORDS) {
            int r = shm_rx_prepare_wait(s->rx);
            if (r < 0) {
                s->errors++;
                return;
            }
            ready |= r;
        }
        if (!ready && s->sent < XP_RECORDS) {
            int r = shm_tx_prepare_wait(s->tx, xp_len(s->sent));
            if (r < 0) {
                s->errors++;
                return;
            }
            ready |= r;
        }
        if (!ready) {
            s->sleeps++;
            if (poll_efd(s->efd, 3000) == 0) s->timeouts++;
        }
        shm_rx_end_wait(s->rx);
        shm_tx_end_wait(s->tx);
        shm_efd_drain(s->efd);
    }
}

static void test_two_processes(void)
{
    struct shm_link b;
    struct shm_worker_fds fds;
    CU_ASSERT_EQUAL_FATAL(shm_link_create_broker(&b, 1u << 16, &fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        /* The worker: forget the broker's mappings, attach from the fds. */
        munmap(b.own_map, b.own_len);
        munmap(b.peer_map, b.peer_len);
        struct shm_link w;
        if (shm_link_attach_worker(&w, &fds) != 0) _exit(10);
        struct xp_side s = {
            .tx = &w.tx, .rx = &w.rx, .hostile = 0, .efd = w.own_efd, .pause_every = 1000000};
        xp_run(&s);
        if (s.errors) _exit(11);
        if (s.timeouts) _exit(12);
        _exit(0);
    }
    struct xp_side s = {.tx = &b.tx, .rx = &b.rx, .hostile = 1, .efd = b.own_efd};
    xp_run(&s);
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    CU_ASSERT(WIFEXITED(st));
    CU_ASSERT_EQUAL(WEXITSTATUS(st), 0);
    CU_ASSERT_EQUAL(s.errors, 0);
    CU_ASSERT_EQUAL(s.timeouts, 0);
    CU_ASSERT_EQUAL(s.sent, XP_RECORDS);
    CU_ASSERT_EQUAL(s.recvd, XP_RECORDS);
    /* Both directions carry the same sequence of payloads. */
    CU_ASSERT_EQUAL(s.sum_rx, s.sum_tx);
    CU_ASSERT(s.sleeps > 0); /* the worker pauses: the broker slept and was woken */
    shm_link_destroy(&b);
}

/* ---- hostile worker against the broker ---- */

static void put_rec(struct shm_link *w, uint64_t off, uint32_t len, uint16_t type, uint16_t flags,
                    uint32_t conn, uint32_t seq)
{
    struct shm_rec h = {.len = len, .type = type, .flags = flags, .conn = conn, .seq = seq};
    memcpy(w->tx.data + off, &h, sizeof h);
}

static void set_head(struct shm_link *w, uint64_t h)
{
    atomic_store_explicit(w->tx.head_pub, h, memory_order_release);
}

/* Fresh pair, then one crafted record at offset 0 with the given head. */
static int craft1(uint32_t len, uint16_t type, uint32_t seq, uint64_t head)
{
    struct shm_link b, w;
    if (make_pair(&b, &w, SMALL_RING) != 0) return 1000;
    uint8_t buf[1024];
    put_rec(&w, 0, len, type, 0, 0, seq);
    set_head(&w, head);
    struct shm_rec h;
    int rc = shm_rx_read_copy(&b.rx, &h, buf, sizeof buf);
    free_pair(&b, &w);
    return rc;
}

/* Fresh pair advanced with n legitimate 64-byte records, all read. */
static int advance(struct shm_link *b, struct shm_link *w, int n)
{
    if (make_pair(b, w, SMALL_RING) != 0) return -1;
    uint8_t buf[1024];
    memset(buf, 1, sizeof buf);
    struct shm_rec h;
    for (int i = 0; i < n; i++) {
        if (shm_tx_write(&w->tx, PROTO_LOG, 0, 0, buf, 48) != 0) return -1;
        shm_tx_publish(&w->tx);
        if (shm_rx_read_copy(&b->rx, &h, buf, sizeof buf) != 1) return -1;
        shm_rx_release(&b->rx);
    }
    return 0;
}

static void test_hostile_headers(void)
{
    struct shm_link b, w;
    uint8_t buf[1024];
    struct shm_rec h;

    CU_ASSERT_EQUAL(craft1(10, PROTO_LOG, 0, 32), 1);            /* control: valid */
    CU_ASSERT_EQUAL(craft1(100, PROTO_LOG, 0, 32), SHM_EBADLEN); /* past head */
    CU_ASSERT_EQUAL(craft1(0xFFFFFFFFu, PROTO_LOG, 0, 4096), SHM_EBADLEN);
    CU_ASSERT_EQUAL(craft1(0xFFFFFFF8u, PROTO_LOG, 0, 4096), SHM_EBADLEN); /* wraps rec size */
    CU_ASSERT_EQUAL(craft1(1025, PROTO_LOG, 0, 2048), SHM_EBADLEN);        /* > max_payload */
    CU_ASSERT_EQUAL(craft1(1024, PROTO_LOG, 0, 2048), 1);                  /* == max_payload */
    CU_ASSERT_EQUAL(craft1(0, 0x0, 0, 32), SHM_EBADPAD); /* type 0 = short padding */
    CU_ASSERT_EQUAL(craft1(0, PROTO_TYPE_LIMIT, 0, 32), SHM_EBADTYPE);
    CU_ASSERT_EQUAL(craft1(0, 0xFFFF, 0, 32), SHM_EBADTYPE);
    CU_ASSERT_EQUAL(craft1(0, PROTO_TYPE_LIMIT - 1, 0, 32), 1);
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 1, 32), SHM_EBADSEQ);
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0xFFFFFFFFu, 32), SHM_EBADSEQ);
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0, 8), SHM_EBADLEN);     /* head inside header */
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0, 20), SHM_EBADHEAD);   /* unaligned */
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0, 4104), SHM_EBADHEAD); /* > one ring ahead */
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0, ~0ull << 3), SHM_EBADHEAD);
    CU_ASSERT_EQUAL(craft1(0, PROTO_LOG, 0, 0), 0); /* nothing published */

    /* Garbage headers: every one must fail or be a valid record. */
    uint64_t rng = 99;
    for (int i = 0; i < 2000; i++) {
        CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
        for (int k = 0; k < 64; k++)
            ((uint64_t *)w.tx.data)[k] = rng_next(&rng);
        set_head(&w, (rng_next(&rng) % 600) & ~7ull);
        int rc = shm_rx_read_copy(&b.rx, &h, buf, sizeof buf);
        CU_ASSERT(rc <= 0 || (h.type > 0 && h.type < PROTO_TYPE_LIMIT && h.seq == 0 &&
                              rec_bytes(h.len) <= b.rx.head));
        free_pair(&b, &w);
    }

    /* A second valid record with a repeated seq. */
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    put_rec(&w, 0, 0, PROTO_LOG, 0, 0, 0);
    put_rec(&w, 16, 0, PROTO_LOG, 0, 0, 0);
    set_head(&w, 32);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), 1);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), SHM_EBADSEQ);
    free_pair(&b, &w);

    /* Caller buffer too small. */
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    put_rec(&w, 0, 100, PROTO_LOG, 0, 0, 0);
    set_head(&w, 128);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, 50), SHM_ETRUNC);
    free_pair(&b, &w);

    /* Head moving backwards, after records were read. */
    CU_ASSERT_EQUAL_FATAL(advance(&b, &w, 3), 0);
    set_head(&w, 128);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), SHM_EBADHEAD);
    free_pair(&b, &w);
    CU_ASSERT_EQUAL_FATAL(advance(&b, &w, 3), 0);
    set_head(&w, 0);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), SHM_EBADHEAD);
    CU_ASSERT_EQUAL(shm_rx_prepare_wait(&b.rx), SHM_EBADHEAD);
    free_pair(&b, &w);

    /* Records at the end of the ring (63 records of 64 bytes read: offset
     * 4032, 64 bytes to the end). */
    CU_ASSERT_EQUAL_FATAL(advance(&b, &w, 63), 0);
    put_rec(&w, 4032, 100, PROTO_LOG, 0, 0, 63); /* runs past the ring end */
    set_head(&w, 4032 + 256);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), SHM_EBADLEN);
    free_pair(&b, &w);
    const struct {
        uint32_t len, conn, seq;
        uint16_t flags;
        uint64_t head;
        int want;
    } pads[] = {
        {48, 0, 63, 0, 4096 + 16, 1},           /* well-formed padding, then a record */
        {40, 0, 63, 0, 4096 + 16, SHM_EBADPAD}, /* short */
        {56, 0, 63, 0, 4096 + 16, SHM_EBADPAD}, /* past the end */
        {0xFFFFFFFFu, 0, 63, 0, 4096 + 16, SHM_EBADPAD},
        {48, 0, 64, 0, 4096 + 16, SHM_EBADPAD}, /* seq consumed */
        {48, 0, 62, 0, 4096 + 16, SHM_EBADPAD},
        {48, 0, 63, 1, 4096 + 16, SHM_EBADPAD}, /* flags */
        {48, 5, 63, 0, 4096 + 16, SHM_EBADPAD}, /* conn */
        {48, 0, 63, 0, 4032 + 32, SHM_EBADPAD}, /* head inside the padding */
    };
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(advance(&b, &w, 63), 0);
        put_rec(&w, 4032, pads[i].len, SHM_REC_PAD, pads[i].flags, pads[i].conn, pads[i].seq);
        put_rec(&w, 0, 0, PROTO_LOG, 0, 0, 63);
        set_head(&w, pads[i].head);
        int rc = shm_rx_read_copy(&b.rx, &h, buf, sizeof buf);
        if (rc != pads[i].want)
            fprintf(stderr, "pad case %zu: got %d want %d\n", i, rc, pads[i].want);
        CU_ASSERT_EQUAL(rc, pads[i].want);
        free_pair(&b, &w);
    }
    /* A head one full ring ahead is allowed; one more byte-step is not. */
    CU_ASSERT_EQUAL_FATAL(advance(&b, &w, 63), 0);
    set_head(&w, 63 * 64 + 4096 + 8);
    CU_ASSERT_EQUAL(shm_rx_read_copy(&b.rx, &h, buf, sizeof buf), SHM_EBADHEAD);
    free_pair(&b, &w);
}

/* The broker's producer side validates the worker's tail before using the
 * free space it implies. */
static void test_hostile_tail(void)
{
    struct shm_link b, w;
    uint8_t buf[64] = {0};
    void *p;
    _Atomic uint64_t *wtail;

    /* Past what was published. */
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    wtail = w.rx.tail_pub;
    while (shm_tx_write(&b.tx, PROTO_MSG, 0, 0, buf, 48) == 0)
        ;
    shm_tx_publish(&b.tx);
    atomic_store(wtail, 4096 + 64);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), SHM_EBADTAIL);
    CU_ASSERT_EQUAL(shm_tx_space(&b.tx), 0);
    CU_ASSERT_EQUAL(shm_tx_prepare_wait(&b.tx, 48), SHM_EBADTAIL);
    free_pair(&b, &w);

    /* Ahead of head while records are still unpublished. */
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    wtail = w.rx.tail_pub;
    while (shm_tx_write(&b.tx, PROTO_MSG, 0, 0, buf, 48) == 0)
        ;
    atomic_store(wtail, 64);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), SHM_EBADTAIL);
    free_pair(&b, &w);

    /* Backwards, and unaligned. */
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    wtail = w.rx.tail_pub;
    while (shm_tx_write(&b.tx, PROTO_MSG, 0, 0, buf, 48) == 0)
        ;
    shm_tx_publish(&b.tx);
    atomic_store(wtail, 128); /* legitimate: two records consumed */
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), 0);
    shm_tx_commit(&b.tx, PROTO_MSG, 0, 0);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), 0);
    shm_tx_commit(&b.tx, PROTO_MSG, 0, 0);
    shm_tx_publish(&b.tx);
    atomic_store(wtail, 64);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), SHM_EBADTAIL);
    atomic_store(wtail, 132);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), SHM_EBADTAIL);
    atomic_store(wtail, 192);
    CU_ASSERT_EQUAL(shm_tx_reserve(&b.tx, 48, &p), 0);
    free_pair(&b, &w);
}

/* A second thread scribbles over region W while the broker reads in a loop. */
struct flipper {
    struct shm_link *w;
    _Atomic int stop;
    _Atomic uint64_t hint_tail; /* broker's tail, so some records look valid */
    _Atomic uint32_t hint_seq;
};

static void *flip_thread(void *arg)
{
    struct flipper *f = arg;
    uint8_t *data = f->w->tx.data;
    uint64_t size = f->w->tx.size, rng = 777;
    while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        switch (r % 8) {
        case 0: /* random bytes anywhere */
            for (int k = 0; k < 16; k++)
                data[rng_next(&rng) & (size - 1)] = (uint8_t)rng_next(&rng);
            break;
        case 1: /* random head */
            set_head(f->w, rng_next(&rng) >> (r % 64));
            break;
        case 2: /* plausible head */
            set_head(f->w, atomic_load(&f->hint_tail) + ((rng_next(&rng) % 600) & ~7ull));
            break;
        default: { /* plausible record at the broker's tail */
            uint64_t t = atomic_load(&f->hint_tail);
            uint64_t off = t & (size - 1);
            uint32_t len = (uint32_t)(rng_next(&rng) % 1100);
            if (off + 16 <= size) {
                put_rec(f->w, off, len, (uint16_t)(rng_next(&rng) % 45), (uint16_t)rng_next(&rng),
                        0, atomic_load(&f->hint_seq) + (uint32_t)(rng_next(&rng) % 3 == 0));
                set_head(f->w, t + (rng_next(&rng) % 3 == 0 ? (rng_next(&rng) % 4200) & ~7ull
                                                            : rec_bytes(len)));
            }
            break;
        }
        }
    }
    return NULL;
}

static void test_hostile_flipper(void)
{
    struct shm_link b, w;
    CU_ASSERT_EQUAL_FATAL(make_pair(&b, &w, SMALL_RING), 0);
    struct flipper f = {.w = &w};
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, flip_thread, &f), 0);
    uint8_t *buf = malloc(b.rx.max_payload);
    uint64_t valid = 0, errors = 0, empty = 0, bad = 0;
    double end = now_s() + 0.5;
    while (now_s() < end) {
        for (int k = 0; k < 256; k++) {
            struct shm_rec h;
            uint64_t tail0 = b.rx.tail;
            uint32_t seq0 = b.rx.seq;
            int rc = shm_rx_read_copy(&b.rx, &h, buf, b.rx.max_payload);
            if (rc == 1) {
                valid++;
                if (h.type == 0 || h.type >= PROTO_TYPE_LIMIT || h.len > b.rx.max_payload ||
                    h.seq != seq0 || b.rx.tail - tail0 < rec_bytes(h.len) ||
                    b.rx.tail - tail0 > b.rx.size || b.rx.tail > b.rx.head ||
                    ((b.rx.tail - rec_bytes(h.len)) & (b.rx.size - 1)) + rec_bytes(h.len) >
                        b.rx.size)
                    bad++;
            } else if (rc == 0) {
                empty++;
            } else if (rc < 0) {
                errors++;
                /* The link would be dead; resynchronise for the next round. */
                b.rx.head = b.rx.tail;
            } else {
                bad++;
            }
            atomic_store(&f.hint_tail, b.rx.tail);
            atomic_store(&f.hint_seq, b.rx.seq);
            shm_rx_release(&b.rx);
        }
    }
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(errors > 0);
    CU_ASSERT(valid > 0);
    free(buf);
    free_pair(&b, &w);
}

int suite_shm(void)
{
    CU_pSuite s = CU_add_suite("shm", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "region seals hold on this kernel", test_seals) ||
        !CU_add_test(s, "attach rejects unsealed/wrong regions", test_attach_rejects) ||
        !CU_add_test(s, "link wiring and limits", test_pair_wiring) ||
        !CU_add_test(s, "error texts", test_strerror) ||
        !CU_add_test(s, "wrap-around at every offset", test_wrap_every_offset) ||
        !CU_add_test(s, "full and empty transitions", test_full_empty) ||
        !CU_add_test(s, "commit of a partly filled reservation", test_commit_len) ||
        !CU_add_test(s, "wake-up flags and eventfds", test_wakeup_flags) ||
        !CU_add_test(s, "chunk flags and reassembly", test_chunk_flags_and_reasm) ||
        !CU_add_test(s, "3 MiB chunked across threads", test_chunks_threads) ||
        !CU_add_test(s, "two processes, 10M records (5M each way)", test_two_processes) ||
        !CU_add_test(s, "hostile headers and heads", test_hostile_headers) ||
        !CU_add_test(s, "hostile tail vs broker tx", test_hostile_tail) ||
        !CU_add_test(s, "hostile writer flipping bytes", test_hostile_flipper))
        return CU_get_error();
    return 0;
}

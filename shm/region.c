/* The two memfd regions of a broker<->worker link and their eventfds: creation
 * and sealing on the broker side, verification and mapping on the worker side,
 * and wiring the rings of shm/ring.h to the control blocks.
 *
 * Layer: shm/. Plain C11 + Linux system calls; must not depend on Lua,
 * libwebsockets, the sandbox or the broker's policy.
 *
 * Region layout (both regions, SHM_CTRL_BYTES of control block, then the ring
 * data, a power of two bytes; the data starts page-aligned):
 *   line 0: magic, version, ring size (written once by the broker in region B;
 *           in region W it stays zero and is never read)
 *   line 1: head of the ring whose data follows (written by the region owner)
 *   line 2: tail of the *other* region's ring (the owner's consumer position)
 *   line 3: the owner's wake-up flags (wants data, wants space)
 * Every line is written by one side only, so a busy pair never bounces a line
 * that both sides write. */
#include "shm/ring.h"
#include "shm/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_MAGIC      0x53484d52u /* "SHMR" */
#define SHM_VERSION    1u
#define SHM_CTRL_BYTES 4096u
#define SHM_RING_MIN   4096u
#define SHM_RING_MAX   (1u << 30)

#define SEALS_B (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
#define SEALS_W (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Control block at the start of each region. */
struct shm_ctrl {
    alignas(64) uint32_t magic;              /* SHM_MAGIC (region B only) */
    uint32_t version;                        /* SHM_VERSION (region B only) */
    uint64_t ring_bytes;                     /* data bytes (region B only; a cross-check) */
    alignas(64) _Atomic uint64_t head;       /* published head of this region's ring */
    alignas(64) _Atomic uint64_t tail;       /* owner's published tail of the peer ring */
    alignas(64) _Atomic uint32_t wants_data; /* owner sleeps until the peer ring has data */
    _Atomic uint32_t wants_space;            /* owner sleeps until its own ring has room */
};

_Static_assert(sizeof(struct shm_ctrl) <= SHM_CTRL_BYTES, "control block too large");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free across processes");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free across processes");

static int is_pow2_ring(uint64_t n)
{
    return n >= SHM_RING_MIN && n <= SHM_RING_MAX && (n & (n - 1)) == 0;
}

static uint32_t ring_max_payload(uint64_t size)
{
    uint64_t q = size / 4;
    return q > (1u << 20) ? (1u << 20) : (uint32_t)q;
}

/* Wires the rings of one side: own region (written by us) and peer region. */
static void wire(struct shm_link *l, uint64_t size, int trusted)
{
    struct shm_ctrl *own = l->own_map;
    const struct shm_ctrl *peer = l->peer_map;
    struct shm_tx *tx = &l->tx;
    struct shm_rx *rx = &l->rx;

    memset(tx, 0, sizeof *tx);
    tx->data = (uint8_t *)l->own_map + SHM_CTRL_BYTES;
    tx->size = size;
    tx->max_payload = ring_max_payload(size);
    tx->head_pub = &own->head;
    tx->peer_tail = &peer->tail;
    tx->own_wants_space = &own->wants_space;
    tx->peer_wants_data = &peer->wants_data;
    tx->peer_efd = l->peer_efd;
    tx->trusted = trusted;

    memset(rx, 0, sizeof *rx);
    rx->data = (const uint8_t *)l->peer_map + SHM_CTRL_BYTES;
    rx->size = size;
    rx->max_payload = ring_max_payload(size);
    rx->type_limit = PROTO_TYPE_LIMIT;
    rx->peer_head = &peer->head;
    rx->tail_pub = &own->tail;
    rx->own_wants_data = &own->wants_data;
    rx->peer_wants_space = &peer->wants_space;
    rx->peer_efd = l->peer_efd;
    rx->trusted = trusted;
}

static void link_init(struct shm_link *l)
{
    memset(l, 0, sizeof *l);
    l->own_memfd = l->peer_memfd = l->own_efd = l->peer_efd = -1;
    l->tx.peer_efd = l->rx.peer_efd = -1;
}

static int new_region(const char *name, size_t bytes)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int shm_link_create_broker(struct shm_link *l, size_t ring_bytes, struct shm_worker_fds *fds)
{
    link_init(l);
    if (!is_pow2_ring(ring_bytes)) return SHM_EBADREGION;
    size_t total = SHM_CTRL_BYTES + ring_bytes;

    l->own_memfd = new_region("shm-b", total);
    if (l->own_memfd < 0) goto fail;
    l->peer_memfd = new_region("shm-w", total);
    if (l->peer_memfd < 0) goto fail;

    /* Map B writable first: after F_SEAL_FUTURE_WRITE no new writable mapping
     * can be made, but this one keeps working. */
    void *b = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, l->own_memfd, 0);
    if (b == MAP_FAILED) goto fail;
    l->own_map = b;
    l->own_len = total;
    struct shm_ctrl *cb = b;
    cb->magic = SHM_MAGIC;
    cb->version = SHM_VERSION;
    cb->ring_bytes = ring_bytes;
    if (fcntl(l->own_memfd, F_ADD_SEALS, SEALS_B) != 0) goto fail;
    if (fcntl(l->peer_memfd, F_ADD_SEALS, SEALS_W) != 0) goto fail;
    /* W is sealed against resizing before the broker maps it, so the worker
     * can never truncate it under the broker's mapping (SIGBUS). */
    void *w = mmap(NULL, total, PROT_READ, MAP_SHARED, l->peer_memfd, 0);
    if (w == MAP_FAILED) goto fail;
    l->peer_map = w;
    l->peer_len = total;

    l->own_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->own_efd < 0) goto fail;
    l->peer_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->peer_efd < 0) goto fail;

    /* The broker's ring size is ring_bytes (its own copy), never cb->ring_bytes. */
    wire(l, ring_bytes, 0);
    fds->region_b = l->own_memfd;
    fds->region_w = l->peer_memfd;
    fds->efd_worker = l->peer_efd;
    fds->efd_broker = l->own_efd;
    return 0;

fail:;
    int e = errno;
    shm_link_destroy(l);
    errno = e;
    return SHM_ESYS;
}

/* Checks that fd is a memfd region of a valid size carrying at least the seals
 * in `want` and none in `deny`; stores the region size in *total. */
static int check_region(int fd, int want, int deny, size_t *total)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return SHM_ESYS;
    if (!S_ISREG(st.st_mode) || st.st_size <= (off_t)SHM_CTRL_BYTES) return SHM_EBADREGION;
    uint64_t ring = (uint64_t)st.st_size - SHM_CTRL_BYTES;
    if (!is_pow2_ring(ring)) return SHM_EBADREGION;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return SHM_EBADREGION; /* not a memfd with sealing */
    if ((seals & want) != want || (seals & deny) != 0) return SHM_EBADREGION;
    *total = (size_t)st.st_size;
    return 0;
}

int shm_link_attach_worker(struct shm_link *l, const struct shm_worker_fds *fds)
{
    link_init(l);
    size_t total_b, total_w;
    int rc = check_region(fds->region_b, SEALS_B, 0, &total_b);
    if (rc) return rc;
    rc = check_region(fds->region_w, SEALS_W, F_SEAL_WRITE | F_SEAL_FUTURE_WRITE, &total_w);
    if (rc) return rc;
    if (total_b != total_w) return SHM_EBADREGION;
    uint64_t ring = total_b - SHM_CTRL_BYTES;

    void *b = mmap(NULL, total_b, PROT_READ, MAP_SHARED, fds->region_b, 0);
    if (b == MAP_FAILED) return SHM_ESYS;
    const struct shm_ctrl *cb = b;
    if (cb->magic != SHM_MAGIC || cb->version != SHM_VERSION || cb->ring_bytes != ring) {
        munmap(b, total_b);
        return SHM_EBADREGION;
    }
    void *w = mmap(NULL, total_w, PROT_READ | PROT_WRITE, MAP_SHARED, fds->region_w, 0);
    if (w == MAP_FAILED) {
        int e = errno;
        munmap(b, total_b);
        errno = e;
        return SHM_ESYS;
    }
    l->own_map = w;
    l->own_len = total_w;
    l->peer_map = b;
    l->peer_len = total_b;
    /* The mappings outlive the descriptors; a sandboxed worker keeps no file. */
    close(fds->region_b);
    close(fds->region_w);
    l->own_efd = fds->efd_worker;
    l->peer_efd = fds->efd_broker;
    wire(l, ring, 1);
    return 0;
}

void shm_link_close_regions(struct shm_link *l)
{
    if (l->own_memfd >= 0) close(l->own_memfd);
    if (l->peer_memfd >= 0) close(l->peer_memfd);
    l->own_memfd = l->peer_memfd = -1;
}

void shm_link_destroy(struct shm_link *l)
{
    if (l->own_map) munmap(l->own_map, l->own_len);
    if (l->peer_map) munmap(l->peer_map, l->peer_len);
    l->own_map = l->peer_map = NULL;
    shm_link_close_regions(l);
    if (l->own_efd >= 0) close(l->own_efd);
    if (l->peer_efd >= 0) close(l->peer_efd);
    l->own_efd = l->peer_efd = -1;
    l->tx.data = NULL;
    l->rx.data = NULL;
    l->tx.peer_efd = l->rx.peer_efd = -1;
}

uint64_t shm_efd_drain(int efd)
{
    uint64_t v = 0;
    if (read(efd, &v, sizeof v) != (ssize_t)sizeof v) return 0;
    return v;
}

void shm_efd_signal(int efd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is near overflow: the peer is woken anyway. */
    ssize_t n = write(efd, &one, sizeof one);
    (void)n;
}

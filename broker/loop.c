/* The broker's event loop (see loop.h): epoll for descriptors, a binary heap
 * of intrusive timers, and a list of deferred calls.
 *
 * Layer: broker/. No Lua, no libwebsockets types. */
#include "broker/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct brk_deferred {
    void (*fn)(void *ctx); /* call to make */
    void *ctx;             /* its argument */
};

struct brk_loop {
    int epfd;                /* the epoll set (owned) */
    int stop;                /* set by brk_loop_stop */
    struct brk_timer **heap; /* min-heap by `when` (owned array, borrowed timers) */
    size_t n_heap, cap_heap;
    struct brk_deferred *defer; /* pending deferred calls (owned array) */
    size_t n_defer, cap_defer;
};

int64_t brk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct brk_loop *brk_loop_new(void)
{
    struct brk_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    return loop;
}

void brk_loop_free(struct brk_loop *loop)
{
    if (!loop) return;
    close(loop->epfd);
    free(loop->heap);
    free(loop->defer);
    free(loop);
}

int brk_io_set(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    if (events == 0) {
        brk_io_stop(loop, io);
        return 0;
    }
    if (io->registered && io->events == events) return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int rc = epoll_ctl(loop->epfd, io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev);
    if (rc < 0) return -errno;
    io->registered = 1;
    io->events = events;
    return 0;
}

void brk_io_stop(struct brk_loop *loop, struct brk_io *io)
{
    if (!io->registered) return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->registered = 0;
    io->events = 0;
}

/* ---- timer heap (1-based positions stored in heap_idx) ---- */

static void heap_set(struct brk_loop *loop, size_t i, struct brk_timer *t)
{
    loop->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(struct brk_loop *loop, size_t i)
{
    struct brk_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when) break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct brk_loop *loop, size_t i)
{
    struct brk_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = t->when;
        if (l < loop->n_heap && loop->heap[l]->when < best) m = l, best = loop->heap[l]->when;
        if (r < loop->n_heap && loop->heap[r]->when < best) m = r;
        if (m == i) break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

void brk_timer_stop(struct brk_loop *loop, struct brk_timer *t)
{
    if (!t->heap_idx) return;
    size_t i = t->heap_idx - 1;
    t->heap_idx = 0;
    loop->n_heap--;
    if (i == loop->n_heap) return;
    struct brk_timer *moved = loop->heap[loop->n_heap];
    heap_set(loop, i, moved);
    heap_up(loop, i);
    heap_down(loop, moved->heap_idx - 1);
}

void brk_timer_start(struct brk_loop *loop, struct brk_timer *t, int64_t when, brk_timer_fn fn)
{
    brk_timer_stop(loop, t);
    if (loop->n_heap == loop->cap_heap) {
        size_t cap = loop->cap_heap ? loop->cap_heap * 2 : 64;
        struct brk_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (!h)
            abort(); /* the broker cannot run without timers; this is our own OOM, not peer data */
        loop->heap = h;
        loop->cap_heap = cap;
    }
    t->when = when;
    t->fn = fn;
    heap_set(loop, loop->n_heap++, t);
    heap_up(loop, loop->n_heap - 1);
}

int brk_defer(struct brk_loop *loop, void (*fn)(void *ctx), void *ctx)
{
    if (loop->n_defer == loop->cap_defer) {
        size_t cap = loop->cap_defer ? loop->cap_defer * 2 : 32;
        struct brk_deferred *d = realloc(loop->defer, cap * sizeof *d);
        if (!d) return -1;
        loop->defer = d;
        loop->cap_defer = cap;
    }
    loop->defer[loop->n_defer++] = (struct brk_deferred){fn, ctx};
    return 0;
}

void brk_loop_stop(struct brk_loop *loop)
{
    loop->stop = 1;
}

static void run_deferred(struct brk_loop *loop)
{
    /* Only the calls queued before this pass run now; what they defer waits
     * for the next round, after epoll and timers had their turn, so nothing
     * that keeps re-deferring itself can starve the loop. */
    size_t n = loop->n_defer;
    for (size_t i = 0; i < n; i++) {
        struct brk_deferred d = loop->defer[i];
        d.fn(d.ctx);
    }
    if (n == 0) return; /* defer may still be NULL: no memmove(NULL, ...) (UBSan) */
    memmove(loop->defer, loop->defer + n, (loop->n_defer - n) * sizeof *loop->defer);
    loop->n_defer -= n;
}

static void run_timers(struct brk_loop *loop)
{
    int64_t now = brk_now_ns();
    while (loop->n_heap && loop->heap[0]->when <= now) {
        struct brk_timer *t = loop->heap[0];
        brk_timer_stop(loop, t);
        t->fn(loop, t);
    }
}

int brk_loop_run(struct brk_loop *loop)
{
    struct epoll_event evs[128];
    loop->stop = 0;
    while (!loop->stop) {
        int timeout = -1;
        if (loop->n_defer)
            timeout = 0;
        else if (loop->n_heap) {
            int64_t d = loop->heap[0]->when - brk_now_ns();
            timeout = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
        }
        int n = epoll_wait(loop->epfd, evs, 128, timeout);
        if (n < 0 && errno != EINTR) return -errno;
        for (int i = 0; i < n; i++) {
            struct brk_io *io = evs[i].data.ptr;
            if (io->registered) io->fn(loop, io, evs[i].events);
        }
        run_timers(loop);
        run_deferred(loop);
    }
    return 0;
}

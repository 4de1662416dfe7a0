/* The broker's event loop: one epoll set, a heap of timers and a queue of
 * deferred calls, in one thread.
 *
 * Layer: broker/. The broker never blocks anywhere but in brk_loop_run's
 * epoll_wait; every socket, eventfd and pidfd is non-blocking and registered
 * here. Deferred calls run after the current round of events, which is where
 * objects are freed (never inside their own callbacks). */
#ifndef BRK_LOOP_H
#define BRK_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct brk_loop;

/* I/O watcher, embedded in its owner. */
struct brk_io;
typedef void (*brk_io_fn)(struct brk_loop *loop, struct brk_io *io, uint32_t events);
struct brk_io {
    int fd;          /* watched descriptor (not owned) */
    uint32_t events; /* EPOLLIN / EPOLLOUT interest now */
    brk_io_fn fn;    /* called with the ready events */
    int registered;  /* 1 while in the epoll set */
};

/* Timer, embedded in its owner. */
struct brk_timer;
typedef void (*brk_timer_fn)(struct brk_loop *loop, struct brk_timer *t);
struct brk_timer {
    int64_t when;    /* CLOCK_MONOTONIC ns deadline */
    brk_timer_fn fn; /* called once at the deadline */
    size_t heap_idx; /* position in the heap + 1, 0 when not armed */
};

struct brk_loop *brk_loop_new(void);
void brk_loop_free(struct brk_loop *loop);

/* Monotonic clock, ns. */
int64_t brk_now_ns(void);

/* Starts, changes or stops watching io->fd for `events` (0 = stop). */
int brk_io_set(struct brk_loop *loop, struct brk_io *io, uint32_t events);
/* Stops watching (before the fd is closed). */
void brk_io_stop(struct brk_loop *loop, struct brk_io *io);

/* Arms (or re-arms) a timer for an absolute deadline. */
void brk_timer_start(struct brk_loop *loop, struct brk_timer *t, int64_t when, brk_timer_fn fn);
void brk_timer_stop(struct brk_loop *loop, struct brk_timer *t);
static inline int brk_timer_armed(const struct brk_timer *t)
{
    return t->heap_idx != 0;
}

/* Runs fn(ctx) after the current round of events. Returns 0 or -1 (OOM). */
int brk_defer(struct brk_loop *loop, void (*fn)(void *ctx), void *ctx);

/* Runs until brk_loop_stop; returns 0. */
int brk_loop_run(struct brk_loop *loop);
void brk_loop_stop(struct brk_loop *loop);

#endif

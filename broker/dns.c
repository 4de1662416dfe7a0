/* Resolver (see dns.h). One detached thread per lookup, at most
 * DNS_MAX_INFLIGHT at once; the loop thread owns every request object except
 * while its thread runs getaddrinfo, and frees it after the completion. */
#include "broker/dns.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "broker/loop.h"

#define DNS_MAX_INFLIGHT 64

struct brk_dns_req {
    struct brk_dns_req *prev_live, *next_live; /* in the in-flight list (loop thread) */
    unsigned owner;                            /* worker the lookup is for */
    struct brk_dns_req *next;                  /* in the done list */
    struct brk_dns *d;                         /* owner */
    char host[256];                            /* name to resolve */
    char port[8];                              /* numeric port */
    int cancelled;                             /* set by brk_dns_cancel (loop thread only) */
    int err;                                   /* getaddrinfo result */
    struct addrinfo *res;                      /* result (owned until handed to fn) */
    brk_dns_fn fn;
    void *ctx;
};

struct brk_dns {
    struct brk_loop *loop;
    struct brk_io io;         /* watches efd */
    int efd;                  /* completion eventfd (owned) */
    pthread_mutex_t mu;       /* guards done */
    struct brk_dns_req *done; /* completed requests */
    struct brk_dns_req *live; /* lookups running, cancelled or not (loop thread only) */
    int inflight;             /* their number */
};

static void *lookup(void *arg)
{
    struct brk_dns_req *r = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    r->err = getaddrinfo(r->host, r->port, &hints, &r->res);
    struct brk_dns *d = r->d;
    pthread_mutex_lock(&d->mu);
    r->next = d->done;
    d->done = r;
    pthread_mutex_unlock(&d->mu);
    uint64_t one = 1;
    ssize_t w = write(d->efd, &one, sizeof one);
    (void)w;
    return NULL;
}

static void on_done(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct brk_dns *d = (struct brk_dns *)((char *)io - offsetof(struct brk_dns, io));
    uint64_t v;
    ssize_t rd = read(d->efd, &v, sizeof v);
    (void)rd;
    pthread_mutex_lock(&d->mu);
    struct brk_dns_req *list = d->done;
    d->done = NULL;
    pthread_mutex_unlock(&d->mu);
    while (list) {
        struct brk_dns_req *r = list;
        list = r->next;
        d->inflight--;
        if (r->prev_live)
            r->prev_live->next_live = r->next_live;
        else
            d->live = r->next_live;
        if (r->next_live) r->next_live->prev_live = r->prev_live;
        if (r->cancelled) {
            if (r->res) freeaddrinfo(r->res);
        } else {
            r->fn(r->ctx, r->err, r->err ? NULL : r->res);
        }
        free(r);
    }
}

struct brk_dns *brk_dns_new(struct brk_loop *loop)
{
    struct brk_dns *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->loop = loop;
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0) {
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    d->io = (struct brk_io){.fd = d->efd, .fn = on_done};
    brk_io_set(loop, &d->io, EPOLLIN);
    return d;
}

void brk_dns_free(struct brk_dns *d)
{
    if (!d) return;
    /* Lookups still running keep their request; they are leaked only if the
     * process exits first, which is when this is called. */
    brk_io_stop(d->loop, &d->io);
    close(d->efd);
    free(d);
}

struct brk_dns_req *brk_dns_resolve(struct brk_dns *d, const char *host, const char *port,
                                    unsigned owner, brk_dns_fn fn, void *ctx)
{
    if (d->inflight >= DNS_MAX_INFLIGHT || strlen(host) >= 256 || strlen(port) >= 8) return NULL;
    int mine = 0;
    for (struct brk_dns_req *it = d->live; it; it = it->next_live)
        mine += it->owner == owner;
    if (mine >= BRK_DNS_PER_OWNER) return NULL;
    struct brk_dns_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->d = d;
    strcpy(r->host, host);
    strcpy(r->port, port);
    r->fn = fn;
    r->ctx = ctx;
    r->owner = owner;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    int rc = pthread_create(&t, &attr, lookup, r);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(r);
        return NULL;
    }
    d->inflight++;
    r->next_live = d->live;
    if (d->live) d->live->prev_live = r;
    d->live = r;
    return r;
}

void brk_dns_cancel(struct brk_dns *d, struct brk_dns_req *r)
{
    (void)d;
    r->cancelled = 1;
}

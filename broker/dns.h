/* Name resolution off the event loop: getaddrinfo runs on short-lived
 * threads and completions come back through an eventfd watched by the loop.
 *
 * Layer: broker/. */
#ifndef BRK_DNS_H
#define BRK_DNS_H

#include <netdb.h>

struct brk_loop;
struct brk_dns;
struct brk_dns_req;

/* Called on the loop thread; res is owned by the callee (freeaddrinfo). */
typedef void (*brk_dns_fn)(void *ctx, int gai_err, struct addrinfo *res);

struct brk_dns *brk_dns_new(struct brk_loop *loop);
void brk_dns_free(struct brk_dns *d);

/* Lookups one owner (a worker) may have in flight, cancelled ones included
 * until their thread finishes, so one worker cannot take every slot. */
#define BRK_DNS_PER_OWNER 8

/* Starts resolving host (port is numeric text) for `owner` (a worker id).
 * Returns the request, or NULL when too many lookups are in flight (for the
 * broker or for this owner) or a thread cannot start. */
struct brk_dns_req *brk_dns_resolve(struct brk_dns *d, const char *host, const char *port,
                                    unsigned owner, brk_dns_fn fn, void *ctx);

/* The callback will not be called for this request any more. */
void brk_dns_cancel(struct brk_dns *d, struct brk_dns_req *r);

#endif

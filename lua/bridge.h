/* The worker's end of the broker link: turns the shared-memory rings of
 * shm/ring.h into the runtime's backend (struct rt_backend), routes print()
 * output to LOG records, receives the script, and carries the websocket
 * module's records both ways.
 *
 * Layer: lua/. Depends on shm/ (rings, record protocol) and the runtime
 * (lua/rt.h); no sockets, no files, no libwebsockets. Everything the broker
 * writes is trusted here (shm/proto.h); the broker does not trust us.
 *
 * Blocking. The worker is single-threaded. When the worker->broker ring is
 * full, a write waits for room on the worker's eventfd but keeps draining and
 * dispatching broker->worker records meanwhile, so neither side can wedge the
 * other (the broker may stop reading our ring while its ring to us is full).
 * A write made while records are being dispatched (e.g. from a __gc that runs
 * during dispatch) never drains; it only waits for room. */
#ifndef RT_BRIDGE_H
#define RT_BRIDGE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "lua/rt.h"
#include "shm/ring.h"

struct rt_bridge;

/* Creates the bridge for an attached worker link (shm_link_attach_worker
 * done). Installs the backend and the output function on rt and registers the
 * `websocket` module (global and require) bound to this link. The link stays
 * owned by the caller and must outlive the bridge. Returns NULL on allocation
 * failure. */
struct rt_bridge *rt_bridge_new(struct rt *rt, struct shm_link *link);

/* Frees the bridge. Call after rt_run() returned (or if it never ran); the
 * order relative to rt_free() does not matter. */
void rt_bridge_free(struct rt_bridge *b);

/* Sends READY with the given text (the sandbox layers). 0 or negative. */
int rt_bridge_send_ready(struct rt_bridge *b, const char *layers_text);

/* Blocks until the broker sent the whole SCRIPT record sequence (payload of
 * the concatenated chunks: u32 name length, name, source). On success *name
 * (NUL-terminated) and *src (NUL-terminated, *len bytes without the NUL) are
 * malloc'd for the caller to free and 0 is returned. Returns negative when the
 * broker sent SHUTDOWN, the link broke, or the sequence was malformed. */
int rt_bridge_wait_script(struct rt_bridge *b, char **name, char **src, size_t *len);

/* Sends EXIT (struct proto_exit with status, then msg, truncated to fit one
 * record; msg may be NULL) and publishes everything. 0 or negative. */
int rt_bridge_send_exit(struct rt_bridge *b, int status, const char *msg);

/* 1 once the broker sent SHUTDOWN. */
int rt_bridge_shutdown_seen(const struct rt_bridge *b);

/* ---- for lua/websocket.c ---- */

/* Largest payload of one worker->broker record. */
uint32_t rt_bridge_max_payload(const struct rt_bridge *b);

/* Writes one record whose payload is a (alen bytes) followed by c (clen
 * bytes). Waits for room while the ring is full, draining and dispatching
 * incoming records on L meanwhile (L may be NULL: then it only waits). The
 * record is committed, not necessarily published (the bridge publishes before
 * it sleeps and at every poll). Returns 0, or negative when the link is
 * broken, the broker shut down, or the record is larger than the maximum. */
int rt_bridge_write(struct rt_bridge *b, lua_State *L, uint16_t type, uint16_t flags, uint32_t conn,
                    const void *a, uint32_t alen, const void *c, uint32_t clen);

/* Makes the records written so far visible to the broker now (and wakes it
 * if it waits for them) instead of when the worker next waits. */
void rt_bridge_publish(struct rt_bridge *b);

/* Like rt_bridge_write but never waits: returns SHM_EAGAIN when the ring is
 * full. Publishes on success. Safe to call from hooks and finalizers. */
int rt_bridge_try_write(struct rt_bridge *b, uint16_t type, uint16_t flags, uint32_t conn,
                        const void *a, uint32_t alen, const void *c, uint32_t clen);

#endif

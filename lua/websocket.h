/* The `websocket` module for scripts: connect, send, ping, receive through a
 * channel, close; and the per-connection state the bridge feeds with the
 * broker's records.
 *
 * Layer: lua/. Depends on the runtime (rt.h, channel.h, errors.h), the record
 * protocol (shm/proto.h) and lua/bridge.h for writing records; no sockets.
 *
 * Context. The module works on a context (struct rt_ws) that the bridge
 * creates with rt_ws_new() before it registers the module. A module opened
 * without a context (rt_open_websocket in a runtime without a broker) has the
 * same functions and constants, and websocket.connect() returns
 * nil, err INTERNAL "no context" (not retryable). */
#ifndef RT_WEBSOCKET_H
#define RT_WEBSOCKET_H

#include <lua.h>
#include <stdint.h>

#include "shm/ring.h"

struct rt_bridge;
struct rt_ws;

/* Opens the `websocket` module (pushes its read-only table). Bound to the
 * context made by rt_ws_new() on this state, if any. */
int rt_open_websocket(lua_State *L);

/* Creates the module context for bridge b on L (a full userdata anchored in
 * the registry, so it lives as long as the Lua state). Returns NULL on
 * allocation failure. */
struct rt_ws *rt_ws_new(lua_State *L, struct rt_bridge *b);

/* Bracket every run of rt_ws_dispatch calls on one stack: begin pushes four
 * strings the message builder reads (four slots of L, left for the caller);
 * end must run afterwards even when the dispatch raised an error. */
void rt_ws_dispatch_begin(struct rt_ws *ws, lua_State *L);
void rt_ws_dispatch_end(struct rt_ws *ws);

/* Handles one broker->worker record of a connection (CONNECTED,
 * CONNECT_FAIL, MSG, TX_CREDIT, PONG, CLOSED, OP_ERROR); wakes tasks and
 * feeds channels on L. May raise a Lua error (memory), so call it in
 * protected mode. Returns 0, or negative for a fatal inconsistency (the run
 * must end). */
int rt_ws_dispatch(struct rt_ws *ws, lua_State *L, const struct shm_rec *rec, const void *payload);

/* Writes what is batched: credits of taken messages and CLOSE records
 * deferred by finalizers; frees connections nobody needs any more. With a
 * non-NULL L it may wait for ring space (draining); with NULL it only tries.
 * Returns 0 or negative (link broken). */
int rt_ws_flush(struct rt_ws *ws, lua_State *L);

/* The run is over: best-effort CLOSE 1001 for every open connection, wakes
 * nothing, and detaches from the bridge (later finalizers write nothing). */
void rt_ws_finish(struct rt_ws *ws);

/* Explanation of the last fatal dispatch error (static or owned by ws). */
const char *rt_ws_fatal_reason(const struct rt_ws *ws);

#endif

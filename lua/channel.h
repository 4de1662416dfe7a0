/* Go-style channels for scripts (module `channel`) and the C calls other
 * modules use to feed channels from outside a task (the websocket bridge,
 * timers).
 *
 * Layer: lua/. A channel is a userdata (metatable "rt.channel") boxing a
 * pointer to struct chan; values held in the buffer are kept in a table in the
 * userdata's user value. */
#ifndef RT_CHANNEL_H
#define RT_CHANNEL_H

#include <lua.h>

struct chan;

/* Creates a channel with `capacity` buffered slots (0 = unbuffered), pushes
 * its userdata and returns the C handle. The handle is valid as long as the
 * userdata is reachable; keep a registry reference while C holds it. */
struct chan *chan_new(lua_State *L, int capacity);

/* The handle of the channel userdata at idx, or NULL if it is not a channel. */
struct chan *chan_check(lua_State *L, int idx);

/* Pushes the channel's userdata (it must still be alive). */
void chan_push(lua_State *L, struct chan *ch);

/* Non-blocking send of the value at idx (popped in every case), from C code
 * that is not a task: hands it to a waiting receiver or select, or buffers it.
 * Returns 0 on success, -1 if the buffer is full, -2 if the channel is closed.
 * A buffered channel created for a bridge may be given extra room with
 * chan_set_capacity. */
int chan_offer(lua_State *L, struct chan *ch, int idx);

/* Changes the buffer size of a channel (capacity >= 1 and >= chan_len):
 * buffered values keep their order and parked senders move into new room.
 * Returns 0, or -1 if the capacity is out of range. May raise on memory. */
int chan_set_capacity(lua_State *L, struct chan *ch, int capacity);

/* Closes the channel (no-op when closed): buffered values are still
 * delivered, then receivers get nil, false. Wakes every waiter. */
void chan_close(lua_State *L, struct chan *ch);

/* Number of values buffered now. */
int chan_len(const struct chan *ch);

/* Called each time a receiver takes a value out of this channel (used to
 * return flow-control credit to the broker). */
typedef void (*chan_take_fn)(void *ctx, struct chan *ch);
void chan_set_take_hook(struct chan *ch, chan_take_fn fn, void *ctx);

/* Opens the `channel` module (pushes its table). */
int rt_open_channel(lua_State *L);

#endif

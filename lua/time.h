/* The `time` module for scripts: durations in nanoseconds (numbers) or Go
 * syntax (strings), time.now() values, time.after/sleep, timers, tickers.
 *
 * Layer: lua/. Built on the runtime's timers (rt.h) and channels
 * (channel.h); no files, no sockets. */
#ifndef RT_TIME_H
#define RT_TIME_H

#include <lua.h>

/* Opens the `time` module (pushes its table). */
int rt_open_time(lua_State *L);

#endif

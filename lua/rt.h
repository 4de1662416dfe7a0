/* The worker-side Lua runtime: one Lua 5.4 state per worker, a restricted
 * script environment, a memory cap, a CPU budget, and a scheduler of tasks
 * (coroutines) that park on blocking calls.
 *
 * Layer: lua/. Talks to the broker only through a backend (struct rt_backend)
 * that worker/ or lua/websocket.c installs; no sockets, no files, no
 * libwebsockets.
 *
 * Tasks. The main chunk runs as task 1; coroutine.spawn(fn, ...) adds tasks.
 * Only the scheduler resumes tasks. A task blocks by yielding from a C
 * function (channel receive/send/select, time.sleep); it becomes runnable
 * again when rt_task_wake() is called for it (channels and timers do this).
 * When no task is runnable the scheduler asks the backend to wait until the
 * next timer deadline; without a backend and without timers a blocked main
 * task is a deadlock and ends the script with an error. When the main task
 * returns, the run ends (other tasks are dropped). */
#ifndef RT_RT_H
#define RT_RT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

struct rt;
struct rt_task;

struct rt_config {
    size_t mem_limit;       /* bytes the Lua allocator may hold; 0 = 64 MiB */
    uint64_t cpu_limit_ms;  /* CPU time the script may use; 0 = unlimited */
    uint32_t hook_interval; /* VM instructions between budget checks; 0 = 10000 */
};

/* How a run ended (rt_run() result; mirrors PROTO_EXIT_* in shm/proto.h). */
enum rt_status {
    RT_OK = 0,     /* main task returned */
    RT_ERROR = 1,  /* script raised an error (message in rt_last_error) */
    RT_MEMORY = 2, /* memory cap hit */
    RT_CPU = 3,    /* CPU budget used up */
};

/* The worker's connection to the outside world (the broker). */
struct rt_backend {
    void *ctx;
    /* Handles whatever has arrived without blocking (may wake tasks, push to
     * channels). Returns 0, or negative to end the run (broker gone). */
    int (*poll)(void *ctx, lua_State *L);
    /* Blocks until something may have arrived or until deadline_ns
     * (CLOCK_MONOTONIC, absolute; -1 = no deadline), then handles it like
     * poll. Returns 0 or negative to end the run. */
    int (*wait)(void *ctx, lua_State *L, int64_t deadline_ns);
    /* Called once when the run ends (before rt_run returns); may be NULL. */
    void (*finish)(void *ctx, lua_State *L);
};

/* Creates the state with the restricted environment and every module
 * (channel, time, errors, json; websocket when registered by the worker).
 * Returns NULL if the state cannot be made. */
struct rt *rt_new(const struct rt_config *cfg);
void rt_free(struct rt *rt);
lua_State *rt_lua(struct rt *rt);
struct rt *rt_from_lua(lua_State *L);

/* Installs the backend (before rt_run). */
void rt_set_backend(struct rt *rt, const struct rt_backend *be);

/* Adds a module: `open` is called immediately and must push the module
 * table, which becomes the global `name` and what require(name) returns. */
void rt_add_module(struct rt *rt, const char *name, lua_CFunction open);

/* Loads text source (binary chunks refused) as the main task and runs the
 * scheduler until the main task ends. Returns an enum rt_status; the error
 * text (with traceback) is then in rt_last_error(). */
int rt_run(struct rt *rt, const char *chunkname, const char *src, size_t len);
const char *rt_last_error(struct rt *rt);

/* Output of print(): by default written to stdout/stderr; a worker routes it
 * to the broker. `is_err` marks error output. */
typedef void (*rt_output_fn)(void *ctx, int is_err, const char *s, size_t n);
void rt_set_output(struct rt *rt, rt_output_fn fn, void *ctx);

/* ---- for C modules ---- */

/* Monotonic clock in nanoseconds. */
int64_t rt_now_ns(void);

/* The task running now (NULL outside of any task). */
struct rt_task *rt_current_task(lua_State *L);

/* Marks a parked task runnable; the value(s) it resumes with are left to the
 * blocking function's continuation (it re-checks its condition). Safe to call
 * for a task that is already runnable. */
void rt_task_wake(struct rt *rt, struct rt_task *t);

/* Parks the current task: call as `return rt_park(L, k, ctx)` from a C
 * function; the task yields and, once woken, continues in k(L, status, ctx).
 * Raises if called outside a task (e.g. in the main state). */
int rt_park(lua_State *L, lua_KFunction k, lua_KContext ctx);

/* Raises a Lua error unless the running code may park: it runs inside a task
 * and every coroutine between it and the task can yield (no metamethod,
 * iterator or C callback in between). Call it before registering anything a
 * wake-up would rely on, so that a refused park leaves nothing behind. */
void rt_park_check(lua_State *L);

/* Timers (used by the time module and by modules with deadlines): at
 * deadline_ns the callback runs on the scheduler's stack (not inside a task);
 * it must not yield. Returns an id > 0 for rt_timer_cancel. */
typedef void (*rt_timer_fn)(struct rt *rt, void *ctx);
uint64_t rt_timer_add(struct rt *rt, int64_t deadline_ns, rt_timer_fn fn, void *ctx);
void rt_timer_cancel(struct rt *rt, uint64_t id);

/* Replaces the table on top of the stack with a read-only proxy of it
 * (lua/readonly.c): writes raise, pairs() works, the real table is never
 * handed out. [-1, +1] */
void rt_readonly(lua_State *L);

/* Typed userdata (lua/udata.c). tname must be a static array of the module:
 * its address is the registry key the checks use (no string lookup per
 * call), its text the name for luaL_newmetatable and error messages. */
int rt_newmetatable(lua_State *L, const char *tname); /* like luaL_newmetatable */
void rt_setmetatable(lua_State *L, const char *tname);
void *rt_testudata(lua_State *L, int idx, const char *tname);
void *rt_checkudata(lua_State *L, int idx, const char *tname);

/* 1 when the script runs under a CPU budget (time spent spinning would be
 * charged to it). */
int rt_cpu_budgeted(const struct rt *rt);

/* Memory accounted by the allocator (bytes now, cap). */
size_t rt_mem_used(struct rt *rt);

#endif

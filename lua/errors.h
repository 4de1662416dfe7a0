/* Error objects for scripts (module `errors`) and the one helper every C
 * module uses to build them.
 *
 * Layer: lua/. Kinds come from PROTO_ERROR_KINDS in shm/proto.h. */
#ifndef RT_ERRORS_H
#define RT_ERRORS_H

#include <lua.h>
#include <stdint.h>

/* Retryable values. */
#define RT_RETRY_NO  0
#define RT_RETRY_YES 1
#define RT_RETRY_NIL 2

/* Pushes a new error object of `kind` (an enum proto_err_kind) with message
 * msg, retryable flag and, when details_idx != 0, the table at details_idx as
 * its details. The stack trace is captured at this point. */
void rt_err_push(lua_State *L, int kind, int retryable, int details_idx, const char *msg);

/* Formats the message, pushes nil (or false when `false_first`) and the error
 * object, and returns 2: `return rt_err_return(L, ...)`. */
int rt_err_return(lua_State *L, int false_first, int kind, int retryable, const char *fmt, ...);

/* 1 if the value at idx is an error object. */
int rt_err_is(lua_State *L, int idx);

/* Opens the `errors` module (pushes its table). */
int rt_open_errors(lua_State *L);

/* Parses a Go duration string ("300ms", "1.5h", "2h45m", "-1s" refused):
 * units ns, us, µs, ms, s, m, h. Returns 0 and *ns, or -1 with *why set to a
 * static explanation. Pure; no Lua. */
int rt_duration_parse(const char *s, size_t n, int64_t *ns, const char **why);

/* Reads a duration argument: a string (Go syntax) or a number counted in
 * `number_unit_ns` (1 for nanoseconds, 1000000 for milliseconds). Negative
 * values are refused. Returns 0 or -1 with *why set. */
int rt_duration_arg(lua_State *L, int idx, int64_t number_unit_ns, int64_t *ns, const char **why);

#endif

/* The `json` module: encode/decode as api-contract.md says (null -> nil,
 * empty table -> [], integers stay integers, mixed/sparse/cyclic/too deep
 * tables refused).
 *
 * Layer: lua/. */
#ifndef RT_JSON_H
#define RT_JSON_H

#include <lua.h>

/* Opens the `json` module (pushes its table). */
int rt_open_json(lua_State *L);

#endif

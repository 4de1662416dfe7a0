/* The broker's one entry point to the policy engine for a worker's request.
 *
 * Layer: broker/. */
#ifndef BRK_POLICY_CHECK_H
#define BRK_POLICY_CHECK_H

#include <stddef.h>

struct brk;

/* Evaluates `action` on `resource` with the broker's policy. Returns 0 when
 * allowed; otherwise nonzero with the deciding reason in why. */
int brk_policy_check(struct brk *b, const char *action, const char *resource, char *why,
                     size_t cap);

#endif

/* brk_policy_check: the broker's request-time view of the policy engine.
 *
 * Layer: broker/. Pure apart from reading the broker's configuration. */
#include "broker/policy_check.h"

#include <stdio.h>

#include "broker/broker.h"
#include "broker/policy.h"

int brk_policy_check(struct brk *b, const char *action, const char *resource, char *why, size_t cap)
{
    struct pol_decision d;
    if (!b->cfg.policy) {
        snprintf(why, cap, "no policy is configured, so nothing is allowed");
        return -1;
    }
    if (pol_eval(b->cfg.policy, action, resource, &d) == POL_ALLOW) return 0;
    snprintf(why, cap, "%s", d.reason);
    return -1;
}

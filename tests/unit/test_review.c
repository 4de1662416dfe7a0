/* CUnit suite for findings of the security review of the broker's handling
 * of worker and server input: each test pins a fix so that it cannot
 * silently regress.
 *
 * Layer: tests of broker/ units that need no event loop, socket or worker
 * process; no Lua. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdlib.h>

#include "broker/broker.h"

/* A worker that keeps opening and closing connections (ids only grow, at
 * most a few live at once) must not grow its connection map with the number
 * of connections it ever opened: before the fix every rehash doubled the
 * table, so 200 000 short connections left it with 262 144 slots (and
 * enough of them would overflow the u32 capacity into an endless loop). */
static void test_connmap_churn_bounded(void)
{
    struct brk_connmap m = {0};
    struct brk_conn *fake = (struct brk_conn *)&m; /* values are only stored */
    uint32_t max_cap = 0;
    for (uint32_t id = 1; id <= 200000; id++) {
        CU_ASSERT_EQUAL_FATAL(brk_connmap_put(&m, id, fake), 0);
        if (id > 2) brk_connmap_del(&m, id - 2); /* two live at a time */
        if (m.cap > max_cap) max_cap = m.cap;
    }
    CU_ASSERT(max_cap <= 64);
    CU_ASSERT_EQUAL(m.n, 2);
    CU_ASSERT_PTR_EQUAL(brk_connmap_get(&m, 200000), fake);
    CU_ASSERT_PTR_EQUAL(brk_connmap_get(&m, 199999), fake);
    CU_ASSERT_PTR_NULL(brk_connmap_get(&m, 199998));
    brk_connmap_free(&m);
}

/* Growth with many live entries still works and finds every one. */
static void test_connmap_many_live(void)
{
    struct brk_connmap m = {0};
    static int vals[5000];
    for (uint32_t id = 1; id <= 5000; id++)
        CU_ASSERT_EQUAL_FATAL(brk_connmap_put(&m, id * 7919u, (struct brk_conn *)&vals[id - 1]), 0);
    for (uint32_t id = 1; id <= 5000; id += 2)
        brk_connmap_del(&m, id * 7919u);
    int ok = 1;
    for (uint32_t id = 1; id <= 5000; id++) {
        struct brk_conn *c = brk_connmap_get(&m, id * 7919u);
        if (id % 2 ? c != NULL : c != (struct brk_conn *)&vals[id - 1]) ok = 0;
    }
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(m.n, 2500);
    CU_ASSERT(m.cap <= 16384);
    brk_connmap_free(&m);
}

int suite_review(void)
{
    CU_pSuite s = CU_add_suite("review", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "connection map stays small under id churn", test_connmap_churn_bounded) ||
        !CU_add_test(s, "connection map with many live ids", test_connmap_many_live))
        return CU_get_error();
    return 0;
}

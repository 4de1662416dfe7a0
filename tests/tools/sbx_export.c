/* Prints the worker's production seccomp filter in libseccomp's PFC text form
 * for the fixed descriptor list {3, 4, 5, 6}. Used to regenerate the golden
 * file that the unit test compares against:
 *     build/sbx_export > sandbox/seccomp.golden.pfc
 *
 * Layer: tests/tools. Links libhost.a for sandbox/; no Lua, no libwebsockets. */
#include "sandbox/sandbox.h"

#include <seccomp.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    static const int fds[] = {3, 4, 5, 6};
    void *ctx = NULL;
    int rc = sbx_filter_build(&ctx, fds, sizeof fds / sizeof fds[0]);
    if (rc < 0) {
        fprintf(stderr, "sbx_export: building the filter failed: %s\n", strerror(-rc));
        return 1;
    }
    fflush(stdout);
    rc = seccomp_export_pfc((scmp_filter_ctx)ctx, 1);
    sbx_filter_free(ctx);
    if (rc < 0) {
        fprintf(stderr, "sbx_export: export failed: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}

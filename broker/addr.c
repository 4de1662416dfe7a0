/* Address classification for the broker's post-DNS address policy.
 *
 * Layer: broker/, pure C: no I/O, no allocation, no libwebsockets, no Lua.
 * Tables of prefixes, checked in order; the first match decides. Ranges are
 * taken from the IANA special-purpose address registries (RFC 6890 and
 * successors); see addr.h for the resulting classes. */
#include "broker/addr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* One prefix: address bytes, prefix length in bits, class. */
struct prefix {
    unsigned char net[16];   /* network bytes (only the first bits/8 rounded up matter) */
    unsigned bits;           /* prefix length in bits */
    enum brk_addr_class cls; /* class of addresses inside */
};

static const struct prefix v4_table[] = {
    {{0, 0, 0, 0}, 32, BRK_ADDR_UNSPECIFIED},
    {{0}, 8, BRK_ADDR_RESERVED},
    {{10}, 8, BRK_ADDR_PRIVATE},
    {{100, 64}, 10, BRK_ADDR_CGNAT},
    {{127}, 8, BRK_ADDR_LOOPBACK},
    {{169, 254}, 16, BRK_ADDR_LINK_LOCAL},
    {{172, 16}, 12, BRK_ADDR_PRIVATE},
    {{192, 0, 0}, 24, BRK_ADDR_RESERVED},
    {{192, 0, 2}, 24, BRK_ADDR_DOCUMENTATION},
    {{192, 88, 99}, 24, BRK_ADDR_RESERVED},
    {{192, 168}, 16, BRK_ADDR_PRIVATE},
    {{198, 18}, 15, BRK_ADDR_RESERVED},
    {{198, 51, 100}, 24, BRK_ADDR_DOCUMENTATION},
    {{203, 0, 113}, 24, BRK_ADDR_DOCUMENTATION},
    {{224}, 4, BRK_ADDR_MULTICAST},
    {{255, 255, 255, 255}, 32, BRK_ADDR_BROADCAST},
    {{240}, 4, BRK_ADDR_RESERVED},
};

/* IPv6 prefixes that do not embed an IPv4 address (those are handled first). */
static const struct prefix v6_table[] = {
    {{0}, 128, BRK_ADDR_UNSPECIFIED},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, BRK_ADDR_LOOPBACK},
    {{0}, 96, BRK_ADDR_RESERVED},                                  /* deprecated IPv4-compatible */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, BRK_ADDR_RESERVED}, /* local-use NAT64 */
    {{0x01, 0x00}, 64, BRK_ADDR_RESERVED},                         /* discard-only */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, BRK_ADDR_DOCUMENTATION},
    {{0x20, 0x01}, 23, BRK_ADDR_RESERVED}, /* IETF protocol assignments, Teredo */
    {{0x3f, 0xff}, 20, BRK_ADDR_DOCUMENTATION},
    {{0x20}, 3, BRK_ADDR_PUBLIC}, /* global unicast */
    {{0xfc}, 7, BRK_ADDR_ULA},
    {{0xfe, 0x80}, 10, BRK_ADDR_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, BRK_ADDR_PRIVATE}, /* deprecated site-local */
    {{0xff}, 8, BRK_ADDR_MULTICAST},
};

static int in_prefix(const unsigned char *a, const struct prefix *p)
{
    unsigned full = p->bits / 8, rest = p->bits % 8;
    if (memcmp(a, p->net, full) != 0) return 0;
    if (rest == 0) return 1;
    unsigned char m = (unsigned char)(0xFFu << (8 - rest));
    return (a[full] & m) == (p->net[full] & m);
}

enum brk_addr_class brk_addr_classify_v4(const unsigned char a[4])
{
    for (size_t i = 0; i < sizeof v4_table / sizeof v4_table[0]; i++)
        if (in_prefix(a, &v4_table[i])) return v4_table[i].cls;
    return BRK_ADDR_PUBLIC;
}

enum brk_addr_class brk_addr_classify_v6(const unsigned char a[16], unsigned *flags)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    unsigned f = 0;
    enum brk_addr_class c = BRK_ADDR_RESERVED;
    if (memcmp(a, mapped, 12) == 0) {
        f = BRK_ADDR_F_MAPPED;
        c = brk_addr_classify_v4(a + 12);
    } else if (memcmp(a, nat64, 12) == 0) {
        f = BRK_ADDR_F_NAT64;
        c = brk_addr_classify_v4(a + 12);
    } else if (a[0] == 0x20 && a[1] == 0x02) {
        f = BRK_ADDR_F_6TO4;
        c = brk_addr_classify_v4(a + 2);
    } else {
        for (size_t i = 0; i < sizeof v6_table / sizeof v6_table[0]; i++) {
            if (in_prefix(a, &v6_table[i])) {
                c = v6_table[i].cls;
                break;
            }
        }
    }
    if (flags) *flags = f;
    return c;
}

enum brk_addr_class brk_addr_classify(const struct sockaddr *sa, socklen_t len, unsigned *flags)
{
    if (flags) *flags = 0;
    if (!sa) return BRK_ADDR_INVALID;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        unsigned char a[4];
        memcpy(a, &s4->sin_addr.s_addr, 4);
        return brk_addr_classify_v4(a);
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return brk_addr_classify_v6(s6->sin6_addr.s6_addr, flags);
    }
    return BRK_ADDR_INVALID;
}

int brk_addr_allowed(enum brk_addr_class c, unsigned allowed_mask)
{
    if ((unsigned)c >= BRK_ADDR_INVALID) return 0;
    return (allowed_mask & BRK_ADDR_BIT(c)) != 0;
}

static const char *const class_names[] = {
#define BRK_ADDR_X(name, text) text,
    BRK_ADDR_CLASSES(BRK_ADDR_X)
#undef BRK_ADDR_X
};

const char *brk_addr_class_name(enum brk_addr_class c)
{
    if ((unsigned)c >= BRK_ADDR_NCLASSES) return "invalid";
    return class_names[c];
}

int brk_addr_parse_mask(const char *list, unsigned *mask, char *err, size_t errcap)
{
    unsigned m = 0;
    const char *p = list;
    if (!list || !*list) {
        if (err && errcap) snprintf(err, errcap, "empty address class list");
        return -1;
    }
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        if (n == 3 && memcmp(p, "all", 3) == 0) {
            m |= BRK_ADDR_BIT(BRK_ADDR_INVALID) - 1u;
            found = 1;
        }
        for (unsigned c = 0; !found && c < BRK_ADDR_INVALID; c++) {
            if (strlen(class_names[c]) == n && memcmp(p, class_names[c], n) == 0) {
                m |= BRK_ADDR_BIT(c);
                found = 1;
            }
        }
        if (!found) {
            if (err && errcap)
                snprintf(err, errcap,
                         "unknown address class '%.*s' (known: public, loopback, "
                         "private, link-local, cgnat, ula, multicast, unspecified, "
                         "broadcast, documentation, reserved, all)",
                         (int)(n > 32 ? 32 : n), p);
            return -1;
        }
        p += n;
        if (*p == ',') p++;
    }
    *mask = m;
    return 0;
}

/* Address policy: classify a resolved IP address before the broker dials it.
 *
 * Layer: broker/, pure C. No I/O (the caller resolves names), no allocation,
 * no libwebsockets, no Lua. The broker checks EVERY address it is about to
 * connect to (after DNS, so a public name that resolves to 127.0.0.1 or
 * 169.254.169.254 is caught) against a mask of allowed classes; the default
 * mask allows only public addresses.
 *
 * Classes (first match wins; see addr.c for the table):
 *   IPv4: 0.0.0.0 unspecified; 0/8 reserved ("this network"); 10/8,
 *   172.16/12, 192.168/16 private; 100.64/10 cgnat; 127/8 loopback;
 *   169.254/16 link-local (cloud metadata 169.254.169.254); 192.0.0/24,
 *   192.88.99/24 (6to4 relay), 198.18/15 (benchmarking), 240/4 reserved;
 *   192.0.2/24, 198.51.100/24, 203.0.113/24 documentation; 224/4 multicast;
 *   255.255.255.255 broadcast; everything else public.
 *   IPv6: :: unspecified; ::1 loopback; ::ffff:0:0/96 (v4-mapped) and
 *   64:ff9b::/96 (NAT64) are classified by the embedded IPv4 address and
 *   flagged; 2002::/16 (6to4) is the class of its embedded IPv4 address if
 *   that is not public, else public, and flagged; other ::/96 (v4-compatible),
 *   64:ff9b:1::/48, 100::/64, 2001::/23 reserved; 2001:db8::/32 and 3fff::/20
 *   documentation; fc00::/7 ula; fe80::/10 link-local; fec0::/10 (old
 *   site-local) private; ff00::/8 multicast; other 2000::/3 public; all the
 *   rest of the space (unassigned) reserved. */
#ifndef BRK_ADDR_H
#define BRK_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Class list: enum name, text name (used in config and logs). */
#define BRK_ADDR_CLASSES(X)                                                                        \
    X(PUBLIC, "public")                                                                            \
    X(LOOPBACK, "loopback")                                                                        \
    X(PRIVATE, "private")                                                                          \
    X(LINK_LOCAL, "link-local")                                                                    \
    X(CGNAT, "cgnat")                                                                              \
    X(ULA, "ula")                                                                                  \
    X(MULTICAST, "multicast")                                                                      \
    X(UNSPECIFIED, "unspecified")                                                                  \
    X(BROADCAST, "broadcast")                                                                      \
    X(DOCUMENTATION, "documentation")                                                              \
    X(RESERVED, "reserved")                                                                        \
    X(INVALID, "invalid")

enum brk_addr_class {
#define BRK_ADDR_X(name, text) BRK_ADDR_##name,
    BRK_ADDR_CLASSES(BRK_ADDR_X)
#undef BRK_ADDR_X
        BRK_ADDR_NCLASSES
};

/* Flags reported next to the class (bit set). */
#define BRK_ADDR_F_MAPPED 0x1u /* IPv6 ::ffff:a.b.c.d, classified as a.b.c.d */
#define BRK_ADDR_F_NAT64  0x2u /* IPv6 64:ff9b::a.b.c.d, classified as a.b.c.d */
#define BRK_ADDR_F_6TO4   0x4u /* IPv6 2002:aabb:ccdd::/48, embedded a.b.c.d checked */

/* Mask bit of a class, and the default mask (public only). INVALID is never
 * allowed, whatever the mask says. */
#define BRK_ADDR_BIT(c)       (1u << (c))
#define BRK_ADDR_DEFAULT_MASK BRK_ADDR_BIT(BRK_ADDR_PUBLIC)

/* Classifies an AF_INET or AF_INET6 socket address of len bytes. Anything
 * else (other family, short len, NULL) is BRK_ADDR_INVALID. *flags (may be
 * NULL) gets BRK_ADDR_F_* bits. */
enum brk_addr_class brk_addr_classify(const struct sockaddr *sa, socklen_t len, unsigned *flags);

/* The same for raw addresses: v4 in network byte order (4 bytes), v6 16 bytes. */
enum brk_addr_class brk_addr_classify_v4(const unsigned char a[4]);
enum brk_addr_class brk_addr_classify_v6(const unsigned char a[16], unsigned *flags);

/* 1 if class c is in allowed_mask (and not INVALID), else 0. */
int brk_addr_allowed(enum brk_addr_class c, unsigned allowed_mask);

/* Text name of a class ("public", "link-local", ...); "invalid" for bad values. */
const char *brk_addr_class_name(enum brk_addr_class c);

/* Parses a comma-separated list of class names (e.g. "public,loopback", or
 * "all" for every class but invalid) into *mask. Returns 0, or -1 and a
 * reason in err for an unknown name or an empty list. */
int brk_addr_parse_mask(const char *list, unsigned *mask, char *err, size_t errcap);

#endif

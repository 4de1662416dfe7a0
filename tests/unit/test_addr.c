/* CUnit suite "addr": address classification of broker/addr.c.
 *
 * Every range is tested at its first and last address and at the addresses
 * just outside it, through a real struct sockaddr as the broker will pass. */
#include "broker/addr.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

struct addr_case {
    const char *text;        /* numeric address */
    enum brk_addr_class cls; /* expected class */
    unsigned flags;          /* expected BRK_ADDR_F_* */
};

#define P   BRK_ADDR_PUBLIC
#define LO  BRK_ADDR_LOOPBACK
#define PR  BRK_ADDR_PRIVATE
#define LL  BRK_ADDR_LINK_LOCAL
#define CG  BRK_ADDR_CGNAT
#define UL  BRK_ADDR_ULA
#define MC  BRK_ADDR_MULTICAST
#define UN  BRK_ADDR_UNSPECIFIED
#define BC  BRK_ADDR_BROADCAST
#define DO  BRK_ADDR_DOCUMENTATION
#define RS  BRK_ADDR_RESERVED
#define MAP BRK_ADDR_F_MAPPED
#define N64 BRK_ADDR_F_NAT64
#define S64 BRK_ADDR_F_6TO4

static const struct addr_case cases[] = {
    {"0.0.0.0", UN, 0},
    {"0.0.0.1", RS, 0},
    {"0.255.255.255", RS, 0},
    {"1.0.0.0", P, 0},
    {"8.8.8.8", P, 0},
    {"9.255.255.255", P, 0},
    {"10.0.0.0", PR, 0},
    {"10.255.255.255", PR, 0},
    {"11.0.0.0", P, 0},
    {"100.63.255.255", P, 0},
    {"100.64.0.0", CG, 0},
    {"100.127.255.255", CG, 0},
    {"100.128.0.0", P, 0},
    {"126.255.255.255", P, 0},
    {"127.0.0.0", LO, 0},
    {"127.0.0.1", LO, 0},
    {"127.255.255.255", LO, 0},
    {"128.0.0.0", P, 0},
    {"169.253.255.255", P, 0},
    {"169.254.0.0", LL, 0},
    {"169.254.169.254", LL, 0},
    {"169.254.255.255", LL, 0},
    {"169.255.0.0", P, 0},
    {"172.15.255.255", P, 0},
    {"172.16.0.0", PR, 0},
    {"172.31.255.255", PR, 0},
    {"172.32.0.0", P, 0},
    {"191.255.255.255", P, 0},
    {"192.0.0.0", RS, 0},
    {"192.0.0.255", RS, 0},
    {"192.0.1.0", P, 0},
    {"192.0.2.0", DO, 0},
    {"192.0.2.255", DO, 0},
    {"192.0.3.0", P, 0},
    {"192.88.98.255", P, 0},
    {"192.88.99.0", RS, 0},
    {"192.88.99.255", RS, 0},
    {"192.88.100.0", P, 0},
    {"192.167.255.255", P, 0},
    {"192.168.0.0", PR, 0},
    {"192.168.255.255", PR, 0},
    {"192.169.0.0", P, 0},
    {"198.17.255.255", P, 0},
    {"198.18.0.0", RS, 0},
    {"198.19.255.255", RS, 0},
    {"198.20.0.0", P, 0},
    {"198.51.99.255", P, 0},
    {"198.51.100.0", DO, 0},
    {"198.51.100.255", DO, 0},
    {"198.51.101.0", P, 0},
    {"203.0.112.255", P, 0},
    {"203.0.113.0", DO, 0},
    {"203.0.113.255", DO, 0},
    {"203.0.114.0", P, 0},
    {"223.255.255.255", P, 0},
    {"224.0.0.0", MC, 0},
    {"239.255.255.255", MC, 0},
    {"240.0.0.0", RS, 0},
    {"255.255.255.254", RS, 0},
    {"255.255.255.255", BC, 0},
    /* IPv6 */
    {"::", UN, 0},
    {"::1", LO, 0},
    {"::2", RS, 0},
    {"::127.0.0.1", RS, 0}, /* deprecated IPv4-compatible */
    {"::ffff:127.0.0.1", LO, MAP},
    {"::ffff:8.8.8.8", P, MAP},
    {"::ffff:169.254.169.254", LL, MAP},
    {"::ffff:10.0.0.1", PR, MAP},
    {"::ffff:0.0.0.0", UN, MAP},
    {"::ffff:255.255.255.255", BC, MAP},
    {"::fffe:8.8.8.8", RS, 0},
    {"::1:ffff:8.8.8.8", RS, 0},
    {"64:ff9b::7f00:1", LO, N64},
    {"64:ff9b::808:808", P, N64},
    {"64:ff9b::a9fe:a9fe", LL, N64},
    {"64:ff9b:1::1", RS, 0},
    {"64:ff9b:0:0:0:1::1", RS, 0},
    {"100::", RS, 0},
    {"100::ffff:ffff:ffff:ffff", RS, 0},
    {"100:0:0:1::", RS, 0},
    {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RS, 0},
    {"2000::", P, 0},
    {"2001::", RS, 0},
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", RS, 0}, /* Teredo */
    {"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", RS, 0},
    {"2001:200::", P, 0},
    {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", P, 0},
    {"2001:db8::", DO, 0},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", DO, 0},
    {"2001:db9::", P, 0},
    {"2002:7f00:1::1", LO, S64},
    {"2002:a00:1::", PR, S64},
    {"2002:808:808::1", P, S64},
    {"2606:4700:4700::1111", P, 0},
    {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", P, 0},
    {"3fff::", DO, 0},
    {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", DO, 0},
    {"3fff:1000::", P, 0},
    {"4000::", RS, 0},
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RS, 0},
    {"fc00::", UL, 0},
    {"fd12:3456::1", UL, 0},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UL, 0},
    {"fe00::", RS, 0},
    {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RS, 0},
    {"fe80::", LL, 0},
    {"fe80::1", LL, 0},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LL, 0},
    {"fec0::", PR, 0},
    {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PR, 0},
    {"ff00::", MC, 0},
    {"ff02::1", MC, 0},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", MC, 0},
};

/* Classifies text through a struct sockaddr_in/in6. */
static enum brk_addr_class classify_text(const char *t, unsigned *flags)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(t, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(443);
        if (inet_pton(AF_INET6, t, &s6->sin6_addr) != 1) return BRK_ADDR_NCLASSES;
        return brk_addr_classify((struct sockaddr *)s6, sizeof *s6, flags);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(80);
    if (inet_pton(AF_INET, t, &s4->sin_addr) != 1) return BRK_ADDR_NCLASSES;
    return brk_addr_classify((struct sockaddr *)s4, sizeof *s4, flags);
}

static void test_ranges(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned flags = 99;
        enum brk_addr_class c = classify_text(cases[i].text, &flags);
        if (c != cases[i].cls || flags != cases[i].flags)
            fprintf(stderr, "\n  %s: got %s/%u want %s/%u\n", cases[i].text, brk_addr_class_name(c),
                    flags, brk_addr_class_name(cases[i].cls), cases[i].flags);
        CU_ASSERT_EQUAL(c, cases[i].cls);
        CU_ASSERT_EQUAL(flags, cases[i].flags);
        /* The default mask allows exactly the public ones. */
        CU_ASSERT_EQUAL(brk_addr_allowed(c, BRK_ADDR_DEFAULT_MASK), cases[i].cls == P);
    }
}

static void test_raw_and_invalid(void)
{
    static const unsigned char v4[4] = {169, 254, 169, 254};
    CU_ASSERT_EQUAL(brk_addr_classify_v4(v4), LL);
    unsigned char v6[16] = {0};
    v6[15] = 1;
    unsigned f = 7;
    CU_ASSERT_EQUAL(brk_addr_classify_v6(v6, &f), LO);
    CU_ASSERT_EQUAL(f, 0);
    CU_ASSERT_EQUAL(brk_addr_classify_v6(v6, NULL), LO);

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    f = 7;
    CU_ASSERT_EQUAL(brk_addr_classify((struct sockaddr *)&un, sizeof un, &f), BRK_ADDR_INVALID);
    CU_ASSERT_EQUAL(f, 0);
    CU_ASSERT_EQUAL(brk_addr_classify(NULL, 0, NULL), BRK_ADDR_INVALID);
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    s4.sin_addr.s_addr = htonl(0x08080808);
    CU_ASSERT_EQUAL(brk_addr_classify((struct sockaddr *)&s4, sizeof s4, NULL), P);
    CU_ASSERT_EQUAL(brk_addr_classify((struct sockaddr *)&s4, sizeof s4 - 1, NULL),
                    BRK_ADDR_INVALID);
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    CU_ASSERT_EQUAL(brk_addr_classify((struct sockaddr *)&s6, sizeof s6, NULL), UN);
    CU_ASSERT_EQUAL(brk_addr_classify((struct sockaddr *)&s6, sizeof s4, NULL), BRK_ADDR_INVALID);
}

static void test_mask_and_names(void)
{
    char err[256];
    unsigned m = 0;
    for (int c = 0; c < BRK_ADDR_NCLASSES; c++) {
        const char *n = brk_addr_class_name((enum brk_addr_class)c);
        CU_ASSERT(n[0] != '\0');
        for (int d = 0; d < c; d++)
            CU_ASSERT(strcmp(n, brk_addr_class_name((enum brk_addr_class)d)) != 0);
        /* Only public by default; INVALID never, even with every bit set. */
        CU_ASSERT_EQUAL(brk_addr_allowed((enum brk_addr_class)c, BRK_ADDR_DEFAULT_MASK),
                        c == BRK_ADDR_PUBLIC);
        CU_ASSERT_EQUAL(brk_addr_allowed((enum brk_addr_class)c, ~0u), c != BRK_ADDR_INVALID);
        CU_ASSERT_EQUAL(brk_addr_allowed((enum brk_addr_class)c, 0), 0);
    }
    CU_ASSERT_STRING_EQUAL(brk_addr_class_name(BRK_ADDR_LINK_LOCAL), "link-local");
    CU_ASSERT_STRING_EQUAL(brk_addr_class_name((enum brk_addr_class)99), "invalid");
    CU_ASSERT_EQUAL(brk_addr_allowed((enum brk_addr_class)99, ~0u), 0);

    CU_ASSERT_EQUAL(brk_addr_parse_mask("public,loopback", &m, err, sizeof err), 0);
    CU_ASSERT_EQUAL(m, BRK_ADDR_BIT(P) | BRK_ADDR_BIT(LO));
    CU_ASSERT(brk_addr_allowed(LO, m));
    CU_ASSERT(!brk_addr_allowed(PR, m));
    CU_ASSERT_EQUAL(brk_addr_parse_mask("link-local", &m, err, sizeof err), 0);
    CU_ASSERT_EQUAL(m, BRK_ADDR_BIT(LL));
    CU_ASSERT_EQUAL(brk_addr_parse_mask("all", &m, err, sizeof err), 0);
    for (int c = 0; c < BRK_ADDR_NCLASSES; c++)
        CU_ASSERT_EQUAL(brk_addr_allowed((enum brk_addr_class)c, m), c != BRK_ADDR_INVALID);
    m = 12345;
    CU_ASSERT_EQUAL(brk_addr_parse_mask("public,bogus", &m, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "bogus") != NULL);
    CU_ASSERT_EQUAL(m, 12345);
    CU_ASSERT_EQUAL(brk_addr_parse_mask("", &m, err, sizeof err), -1);
    CU_ASSERT_EQUAL(brk_addr_parse_mask(NULL, &m, NULL, 0), -1);
    CU_ASSERT_EQUAL(brk_addr_parse_mask("public,,loopback", &m, err, sizeof err), -1);
    CU_ASSERT_EQUAL(brk_addr_parse_mask("publicx", &m, err, sizeof err), -1);
    CU_ASSERT_EQUAL(brk_addr_parse_mask("invalid", &m, err, sizeof err), -1);
}

int suite_addr(void)
{
    CU_pSuite s = CU_add_suite("addr", NULL, NULL);
    if (!s || !CU_add_test(s, "range boundaries", test_ranges) ||
        !CU_add_test(s, "raw addresses and invalid input", test_raw_and_invalid) ||
        !CU_add_test(s, "masks and names", test_mask_and_names))
        return CU_get_error();
    return 0;
}

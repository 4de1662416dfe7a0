/* CUnit suite "url": canonicalisation corpus for broker/url.c.
 *
 * Every case asserts the exact canonical string or the exact error code.
 * Also: RFC 3492 section 7.1 Punycode vectors, field-by-field checks, every
 * truncation of accepted URLs, and a seeded mutation run that checks that
 * accepted URLs are idempotent (canonical form re-parses to itself). */
#include "broker/url.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct url_case {
    const char *in;    /* input URL (NUL-terminated) */
    const char *canon; /* expected canonical URL, NULL when rejected */
    int err;           /* expected error code when rejected */
};

static const struct url_case cases[] = {
    /* scheme, case, default ports */
    {"ws://example.com", "ws://example.com/", 0},
    {"WS://EXAMPLE.COM/", "ws://example.com/", 0},
    {"wSs://Example.Com:443/Path", "wss://example.com/Path", 0},
    {"ws://example.com:80/", "ws://example.com/", 0},
    {"wss://example.com:80/", "wss://example.com:80/", 0},
    {"ws://example.com:443/", "ws://example.com:443/", 0},
    {"ws://example.com:08080/", "ws://example.com:8080/", 0},
    {"ws://a:1/", "ws://a:1/", 0},
    {"ws://a:65535/", "ws://a:65535/", 0},
    {"http://example.com/", NULL, BRK_URL_ESCHEME},
    {"https://example.com/", NULL, BRK_URL_ESCHEME},
    {"wsx://a/", NULL, BRK_URL_ESCHEME},
    {"w://a/", NULL, BRK_URL_ESCHEME},
    {"example.com", NULL, BRK_URL_ESYNTAX},
    {"", NULL, BRK_URL_ESYNTAX},
    {"ws:example.com", NULL, BRK_URL_ESYNTAX},
    {"ws:/example.com", NULL, BRK_URL_ESYNTAX},
    {"ws:", NULL, BRK_URL_ESYNTAX},
    /* empty host */
    {"ws://", NULL, BRK_URL_EHOST},
    {"ws:///x", NULL, BRK_URL_EHOST},
    {"ws://?x", NULL, BRK_URL_EHOST},
    {"ws://:80/", NULL, BRK_URL_EHOST},
    {"ws://./", NULL, BRK_URL_EHOST},
    /* userinfo and the classic confusion tricks */
    {"ws://user@example.com/", NULL, BRK_URL_EUSERINFO},
    {"ws://user:pass@example.com/", NULL, BRK_URL_EUSERINFO},
    {"ws://good.com@evil.com/", NULL, BRK_URL_EUSERINFO},
    {"ws://@evil.com", NULL, BRK_URL_EUSERINFO},
    {"ws://a:b@c:80", NULL, BRK_URL_EUSERINFO},
    {"ws://evil.com#@good.com", NULL, BRK_URL_EFRAGMENT},
    {"ws://a/#x", NULL, BRK_URL_EFRAGMENT},
    {"ws://a/x?y#", NULL, BRK_URL_EFRAGMENT},
    {"ws://good.com\\@evil.com", NULL, BRK_URL_ESYNTAX},
    {"ws://a\\b/", NULL, BRK_URL_ESYNTAX},
    {"ws://a/b\\c", NULL, BRK_URL_ESYNTAX},
    {"ws:\\\\a/", NULL, BRK_URL_ESYNTAX},
    /* '@' outside the authority is just a path/query character */
    {"ws://a/@b", "ws://a/@b", 0},
    {"ws://a?@b", "ws://a/?@b", 0},
    /* whitespace and controls */
    {"ws://a/ b", NULL, BRK_URL_ESYNTAX},
    {"ws:// a/", NULL, BRK_URL_ESYNTAX},
    {" ws://a/", NULL, BRK_URL_ESYNTAX},
    {"ws://a/\t", NULL, BRK_URL_ESYNTAX},
    {"ws://a/\r\nX: y", NULL, BRK_URL_ESYNTAX},
    {"ws://a/\x7f", NULL, BRK_URL_ESYNTAX},
    {"ws://a/\x01", NULL, BRK_URL_ESYNTAX},
    /* ports */
    {"ws://a:0/", NULL, BRK_URL_EPORT},
    {"ws://a:65536/", NULL, BRK_URL_EPORT},
    {"ws://a:123456/", NULL, BRK_URL_EPORT},
    {"ws://a:/", NULL, BRK_URL_EPORT},
    {"ws://a:", NULL, BRK_URL_EPORT},
    {"ws://a:-1/", NULL, BRK_URL_EPORT},
    {"ws://a:+80/", NULL, BRK_URL_EPORT},
    {"ws://a:0x50/", NULL, BRK_URL_EPORT},
    {"ws://a:80:80/", NULL, BRK_URL_EPORT},
    {"ws://[::1]:/", NULL, BRK_URL_EPORT},
    /* host names */
    {"ws://example.com./", "ws://example.com/", 0},
    {"ws://Example.COM.:8080", "ws://example.com:8080/", 0},
    {"ws://a..b/", NULL, BRK_URL_EHOST},
    {"ws://.a/", NULL, BRK_URL_EHOST},
    {"ws://a../", NULL, BRK_URL_EHOST},
    {"ws://-a.com/", NULL, BRK_URL_EHOST},
    {"ws://a-.com/", NULL, BRK_URL_EHOST},
    {"ws://a-b.c-d.com/", "ws://a-b.c-d.com/", 0},
    {"ws://my_host/", "ws://my_host/", 0},
    {"ws://a!b/", NULL, BRK_URL_EHOST},
    {"ws://a$b/", NULL, BRK_URL_EHOST},
    {"ws://a*b/", NULL, BRK_URL_EHOST},
    {"ws://exa%6dple.com/", NULL, BRK_URL_EHOST},
    {"ws://%65xample.com/", NULL, BRK_URL_EHOST},
    {"ws://1.2.3.4.example/", "ws://1.2.3.4.example/", 0},
    {"ws://localhost:9000/ws", "ws://localhost:9000/ws", 0},
    /* IPv4: only canonical dotted decimal */
    {"ws://127.0.0.1:9000/x", "ws://127.0.0.1:9000/x", 0},
    {"ws://127.0.0.1./", "ws://127.0.0.1/", 0},
    {"ws://0.0.0.0/", "ws://0.0.0.0/", 0},
    {"ws://255.255.255.255/", "ws://255.255.255.255/", 0},
    {"ws://2130706433/", NULL, BRK_URL_EIP},
    {"ws://0x7f.0.0.1/", NULL, BRK_URL_EIP},
    {"ws://0x7f000001/", NULL, BRK_URL_EIP},
    {"ws://0177.0.0.1/", NULL, BRK_URL_EIP},
    {"ws://127.0.0.01/", NULL, BRK_URL_EIP},
    {"ws://127.1/", NULL, BRK_URL_EIP},
    {"ws://127.0.1/", NULL, BRK_URL_EIP},
    {"ws://127.0.0.1.1/", NULL, BRK_URL_EIP},
    {"ws://256.0.0.1/", NULL, BRK_URL_EIP},
    {"ws://1.2.3.0x4/", NULL, BRK_URL_EIP},
    {"ws://1.2.3.0X/", NULL, BRK_URL_EIP},
    {"ws://example.123/", NULL, BRK_URL_EIP},
    {"ws://0/", NULL, BRK_URL_EIP},
    /* IPv6 */
    {"ws://[::1]/", "ws://[::1]/", 0},
    {"ws://[0:0:0:0:0:0:0:1]:8080", "ws://[::1]:8080/", 0},
    {"ws://[::FFFF:127.0.0.1]/", "ws://[::ffff:127.0.0.1]/", 0},
    {"ws://[::ffff:7f00:1]/", "ws://[::ffff:127.0.0.1]/", 0},
    {"wss://[2001:DB8:0:0:1:0:0:1]:443", "wss://[2001:db8::1:0:0:1]/", 0},
    {"ws://[2001:db8:0:0:0:0:2:1]/", "ws://[2001:db8::2:1]/", 0},
    {"ws://[::1%25eth0]/", NULL, BRK_URL_EIP},
    {"ws://[fe80::1%eth0]/", NULL, BRK_URL_EIP},
    {"ws://[::1/", NULL, BRK_URL_EIP},
    {"ws://[::1]x/", NULL, BRK_URL_ESYNTAX},
    {"ws://[1.2.3.4]/", NULL, BRK_URL_EIP},
    {"ws://[v1.x]/", NULL, BRK_URL_EIP},
    {"ws://[]/", NULL, BRK_URL_EIP},
    {"ws://[::1::2]/", NULL, BRK_URL_EIP},
    {"ws://::1/", NULL, BRK_URL_EHOST},
    /* IDNA: U-labels to A-labels; look-alikes become different names */
    {"ws://b\xc3\xbc"
     "cher.de/",
     "ws://xn--bcher-kva.de/", 0},
    {"ws://B\xc3\x9c"
     "CHER.de/",
     "ws://xn--bcher-kva.de/", 0},
    {"ws://\xd0\xb0pple.com/", "ws://xn--pple-43d.com/", 0},
    {"ws://m\xc3\xbcnchen.example:8080/ws?x", "ws://xn--mnchen-3ya.example:8080/ws?x", 0},
    {"ws://xn--bcher-kva.de/", "ws://xn--bcher-kva.de/", 0},
    {"ws://example\xef\xbc\x8e"
     "com/",
     NULL, BRK_URL_EHOST}, /* fullwidth full stop */
    {"ws://example\xe3\x80\x82"
     "com/",
     NULL, BRK_URL_EHOST}, /* ideographic full stop */
    {"ws://example\xef\xbd\xa1"
     "com/",
     NULL, BRK_URL_EHOST},                                  /* halfwidth full stop */
    {"ws://\xef\xbd\x85xample.com/", NULL, BRK_URL_EHOST},  /* fullwidth 'e' */
    {"ws://exa\xe2\x80\x8dmple.com/", NULL, BRK_URL_EHOST}, /* zero width joiner */
    {"ws://exa\xe2\x80\xaemple.com/", NULL, BRK_URL_EHOST}, /* right-to-left override */
    {"ws://exa\xc2\xa0mple.com/", NULL, BRK_URL_EHOST},     /* no-break space */
    {"ws://exa\xc2\xadmple.com/", NULL, BRK_URL_EHOST},     /* soft hyphen */
    {"ws://good.com\xe2\x88\x95"
     "evil.com/",
     NULL, BRK_URL_EHOST},                               /* division slash */
    {"ws://\xc0\xaf.com/", NULL, BRK_URL_EHOST},         /* overlong '/' */
    {"ws://\x80.com/", NULL, BRK_URL_EHOST},             /* lone continuation */
    {"ws://\xed\xa0\x80.com/", NULL, BRK_URL_EHOST},     /* surrogate */
    {"ws://\xc3.com/", NULL, BRK_URL_EHOST},             /* truncated */
    {"ws://\xf4\x90\x80\x80.com/", NULL, BRK_URL_EHOST}, /* above U+10FFFF */
    {"ws://\xc3\xbc-.com/", NULL, BRK_URL_EHOST},        /* ends with '-' */
    {"ws://\xc3\xbc!.com/", NULL, BRK_URL_EHOST},        /* bad ASCII in U-label */
    /* percent-encoding in path and query */
    {"ws://example.com/a%2fb", "ws://example.com/a%2Fb", 0},
    {"ws://example.com/a%2Fb", "ws://example.com/a%2Fb", 0},
    {"ws://example.com/%7euser", "ws://example.com/~user", 0},
    {"ws://example.com/%7Euser", "ws://example.com/~user", 0},
    {"ws://example.com/%41%5a%30%2D%5F", "ws://example.com/AZ0-_", 0},
    {"ws://example.com/%3f%23%25%40", "ws://example.com/%3F%23%25%40", 0},
    {"ws://example.com/p?q=%7e&r=%2f", "ws://example.com/p?q=~&r=%2F", 0},
    {"ws://example.com/\xc3\xa9", "ws://example.com/%C3%A9", 0},
    {"ws://example.com/{x}|^`\"<>[]", "ws://example.com/%7Bx%7D%7C%5E%60%22%3C%3E%5B%5D", 0},
    {"ws://example.com/!$&'()*+,;=:@", "ws://example.com/!$&'()*+,;=:@", 0},
    {"ws://a/%zz", NULL, BRK_URL_EPATH},
    {"ws://a/%4", NULL, BRK_URL_EPATH},
    {"ws://a/%", NULL, BRK_URL_EPATH},
    {"ws://a/?%g0", NULL, BRK_URL_EPATH},
    {"ws://a/?x=%", NULL, BRK_URL_EPATH},
    /* query handling */
    {"ws://example.com?x=1", "ws://example.com/?x=1", 0},
    {"ws://example.com/?", "ws://example.com/?", 0},
    {"ws://example.com/q?a/b?c", "ws://example.com/q?a/b?c", 0},
    {"ws://example.com/q?x=../y", "ws://example.com/q?x=../y", 0},
    /* dot segments */
    {"ws://example.com/a/../b", "ws://example.com/b", 0},
    {"ws://example.com/a/./b/.", "ws://example.com/a/b/", 0},
    {"ws://example.com/../../x", "ws://example.com/x", 0},
    {"ws://example.com/a/%2e%2E/b", "ws://example.com/b", 0},
    {"ws://example.com/a/%2E/b", "ws://example.com/a/b", 0},
    {"ws://example.com/a/..%2Fb", "ws://example.com/a/..%2Fb", 0},
    {"ws://example.com/a/..", "ws://example.com/", 0},
    {"ws://example.com/a/b/..?q", "ws://example.com/a/?q", 0},
    {"ws://example.com/..", "ws://example.com/", 0},
    {"ws://example.com/.../x", "ws://example.com/.../x", 0},
    {"ws://example.com/a//../b", "ws://example.com/a/b", 0},
    {"ws://example.com/.a/..b", "ws://example.com/.a/..b", 0},
};

static void test_corpus(void)
{
    struct brk_url *u = malloc(sizeof *u);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct url_case *c = &cases[i];
        int r = brk_url_parse(c->in, strlen(c->in), u, err, sizeof err);
        if (c->canon) {
            if (r != 0 || strcmp(u->canonical, c->canon) != 0)
                fprintf(stderr, "\n  case %zu '%s': r=%d (%s) got '%s' want '%s'\n", i, c->in, r,
                        err, u->canonical, c->canon);
            CU_ASSERT_EQUAL(r, 0);
            CU_ASSERT_STRING_EQUAL(u->canonical, c->canon);
            /* Idempotent: the canonical form parses to itself. */
            struct brk_url *v = malloc(sizeof *v);
            CU_ASSERT_PTR_NOT_NULL_FATAL(v);
            CU_ASSERT_EQUAL(brk_url_parse(u->canonical, strlen(u->canonical), v, err, sizeof err),
                            0);
            CU_ASSERT_STRING_EQUAL(v->canonical, u->canonical);
            free(v);
        } else {
            if (r != c->err)
                fprintf(stderr, "\n  case %zu '%s': r=%d want %d (%s) canon '%s'\n", i, c->in, r,
                        c->err, err, u->canonical);
            CU_ASSERT_EQUAL(r, c->err);
            CU_ASSERT(err[0] != '\0');
            CU_ASSERT_EQUAL(u->canonical[0], '\0');
        }
    }
    free(u);
}

static void test_fields(void)
{
    struct brk_url *u = malloc(sizeof *u);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    const char *s = "wss://Example.com:8443/a/b?q=1";
    CU_ASSERT_EQUAL_FATAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(u->scheme, "wss");
    CU_ASSERT_EQUAL(u->secure, 1);
    CU_ASSERT_STRING_EQUAL(u->host, "example.com");
    CU_ASSERT_EQUAL(u->host_is_ip, 0);
    CU_ASSERT_EQUAL(u->port, 8443);
    CU_ASSERT_STRING_EQUAL(u->host_header, "example.com:8443");
    CU_ASSERT_STRING_EQUAL(u->target, "/a/b?q=1");
    CU_ASSERT_STRING_EQUAL(u->canonical, "wss://example.com:8443/a/b?q=1");
    CU_ASSERT_STRING_EQUAL(u->display, "wss://example.com:8443/a/b");

    s = "ws://[::1]:9001/x?secret=1";
    CU_ASSERT_EQUAL_FATAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(u->scheme, "ws");
    CU_ASSERT_EQUAL(u->secure, 0);
    CU_ASSERT_STRING_EQUAL(u->host, "::1");
    CU_ASSERT_EQUAL(u->host_is_ip, 6);
    CU_ASSERT_EQUAL(u->port, 9001);
    CU_ASSERT_STRING_EQUAL(u->host_header, "[::1]:9001");
    CU_ASSERT_STRING_EQUAL(u->target, "/x?secret=1");
    CU_ASSERT_STRING_EQUAL(u->display, "ws://[::1]:9001/x");

    s = "wss://x.org";
    CU_ASSERT_EQUAL_FATAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(u->port, 443);
    CU_ASSERT_STRING_EQUAL(u->host_header, "x.org");
    CU_ASSERT_STRING_EQUAL(u->target, "/");
    CU_ASSERT_STRING_EQUAL(u->display, "wss://x.org/");

    s = "ws://[::1]/";
    CU_ASSERT_EQUAL_FATAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(u->port, 80);
    CU_ASSERT_STRING_EQUAL(u->host_header, "[::1]");

    s = "ws://10.1.2.3:81";
    CU_ASSERT_EQUAL_FATAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(u->host_is_ip, 4);
    CU_ASSERT_STRING_EQUAL(u->host, "10.1.2.3");
    CU_ASSERT_STRING_EQUAL(u->host_header, "10.1.2.3:81");

    /* Errors never echo credentials. */
    s = "ws://alice:s3cret@example.com/";
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), BRK_URL_EUSERINFO);
    CU_ASSERT_PTR_NULL(strstr(err, "s3cret"));
    CU_ASSERT_PTR_NULL(strstr(err, "alice"));

    /* Embedded NUL inside the given length is rejected, the length is honoured. */
    static const char nul[] = "ws://a/\0b";
    CU_ASSERT_EQUAL(brk_url_parse(nul, sizeof nul - 1, u, err, sizeof err), BRK_URL_ESYNTAX);
    CU_ASSERT_EQUAL(brk_url_parse("ws://a/xyz", 7, u, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(u->canonical, "ws://a/");

    /* NULL input and no error buffer. */
    CU_ASSERT_EQUAL(brk_url_parse(NULL, 0, u, NULL, 0), BRK_URL_ESYNTAX);
    CU_ASSERT_EQUAL(brk_url_parse("http://a", 8, u, NULL, 0), BRK_URL_ESCHEME);
    CU_ASSERT_STRING_EQUAL(brk_url_strerror(BRK_URL_EUSERINFO),
                           "user information in URL not allowed");
    CU_ASSERT_STRING_EQUAL(brk_url_strerror(12345), "unknown error");
    free(u);
}

static void test_lengths(void)
{
    struct brk_url *u = malloc(sizeof *u);
    char *s = malloc(BRK_URL_MAX + 400);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    if (!u || !s) return;

    /* Exactly BRK_URL_MAX bytes is accepted; one more is not. */
    strcpy(s, "ws://a/");
    memset(s + 7, 'x', BRK_URL_MAX - 7);
    CU_ASSERT_EQUAL(brk_url_parse(s, BRK_URL_MAX, u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(strlen(u->canonical), BRK_URL_MAX);
    s[BRK_URL_MAX] = 'x';
    CU_ASSERT_EQUAL(brk_url_parse(s, BRK_URL_MAX + 1, u, err, sizeof err), BRK_URL_ETOOLONG);

    /* Percent-encoding expansion beyond the limit. */
    strcpy(s, "ws://a/");
    for (size_t i = 7; i + 2 <= 3007; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    CU_ASSERT_EQUAL(brk_url_parse(s, 3007, u, err, sizeof err), BRK_URL_ETOOLONG);
    /* Same in the query. */
    strcpy(s, "ws://a/?");
    for (size_t i = 8; i + 2 <= 3008; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    CU_ASSERT_EQUAL(brk_url_parse(s, 3008, u, err, sizeof err), BRK_URL_ETOOLONG);

    /* Labels: 63 bytes ok, 64 not; host 253 ok, 254 not. */
    char host[300];
    memset(host, 'a', 63);
    snprintf(s, 400, "ws://%.63s.com/", host);
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    memset(host, 'a', 64);
    snprintf(s, 400, "ws://%.64s.com/", host);
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), BRK_URL_EHOST);
    /* 4 labels of 63 plus 3 dots = 255; trim to 253 with "a.b" style. */
    char name[300];
    size_t o = 0;
    for (int l = 0; l < 3; l++) {
        memset(name + o, 'b', 63);
        o += 63;
        name[o++] = '.';
    }
    memset(name + o, 'c', 61);
    o += 61;
    name[o] = '\0';
    CU_ASSERT_EQUAL(strlen(name), 253);
    snprintf(s, 400, "ws://%s/", name);
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(strlen(u->host), 253);
    snprintf(s, 400, "ws://%s./", name); /* trailing dot does not count */
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), 0);
    snprintf(s, 400, "ws://%sc/", name);
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), BRK_URL_EHOST);

    /* A U-label whose A-label exceeds 63 bytes. */
    o = 0;
    for (int i = 0; i < 60; i++) {
        memcpy(name + o, "\xc3\xbc", 2);
        o += 2;
    }
    name[o] = '\0';
    snprintf(s, 400, "ws://%s.de/", name);
    CU_ASSERT_EQUAL(brk_url_parse(s, strlen(s), u, err, sizeof err), BRK_URL_EHOST);
    free(s);
    free(u);
}

struct pc_vec {
    const char *name;   /* RFC 3492 7.1 label */
    uint32_t cp[64];    /* code points */
    size_t n;           /* number of code points */
    const char *expect; /* Punycode */
};

static void test_punycode(void)
{
    static const struct pc_vec v[] = {
        {"(A) Arabic (Egyptian)",
         {0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644, 0x0645, 0x0648,
          0x0634, 0x0639, 0x0631, 0x0628, 0x064A, 0x061F},
         17,
         "egbpdaj6bu4bxfgehfvwxn"},
        {"(B) Chinese (simplified)",
         {0x4ED6, 0x4EEC, 0x4E3A, 0x4EC0, 0x4E48, 0x4E0D, 0x8BF4, 0x4E2D, 0x6587},
         9,
         "ihqwcrb4cv8a8dqg056pqjye"},
        {"(J) Spanish",
         {'P', 'o', 'r', 'q', 'u', 0xE9, 'n', 'o', 'p', 'u',  'e', 'd', 'e', 'n',
          's', 'i', 'm', 'p', 'l', 'e',  'm', 'e', 'n', 't',  'e', 'h', 'a', 'b',
          'l', 'a', 'r', 'e', 'n', 'E',  's', 'p', 'a', 0xF1, 'o', 'l'},
         40,
         "PorqunopuedensimplementehablarenEspaol-fmd56a"},
        {"(L) 3<nen>B<gumi><kinpachi><sensei>",
         {'3', 0x5E74, 'B', 0x7D44, 0x91D1, 0x516B, 0x5148, 0x751F},
         8,
         "3B-ww4c5e180e575a65lsy2b"},
        {"(S) -> $1.00 <-",
         {'-', '>', ' ', '$', '1', '.', '0', '0', ' ', '<', '-'},
         11,
         "-> $1.00 <--"},
        {"buecher", {'b', 0xFC, 'c', 'h', 'e', 'r'}, 6, "bcher-kva"},
    };
    char out[128];
    size_t len = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int r = brk_url_punycode_encode(v[i].cp, v[i].n, out, sizeof out, &len);
        CU_ASSERT_EQUAL(r, 0);
        CU_ASSERT_STRING_EQUAL(out, v[i].expect);
        CU_ASSERT_EQUAL(len, strlen(v[i].expect));
        /* Every too-small buffer is refused, never overrun. */
        for (size_t cap = 0; cap <= strlen(v[i].expect); cap++) {
            char *tiny = malloc(cap ? cap : 1);
            CU_ASSERT_EQUAL(brk_url_punycode_encode(v[i].cp, v[i].n, tiny, cap, NULL),
                            BRK_URL_ETOOLONG);
            free(tiny);
        }
    }
    uint32_t bad[] = {'a', 0xD800};
    CU_ASSERT_EQUAL(brk_url_punycode_encode(bad, 2, out, sizeof out, NULL), BRK_URL_EHOST);
    bad[1] = 0x110000;
    CU_ASSERT_EQUAL(brk_url_punycode_encode(bad, 2, out, sizeof out, NULL), BRK_URL_EHOST);
}

static void test_canon_host(void)
{
    char out[BRK_URL_HOST_MAX + 1], err[128];
    int ip = -1;
    CU_ASSERT_EQUAL(
        brk_url_canon_host("WWW.Example.ORG.", 16, out, sizeof out, &ip, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(out, "www.example.org");
    CU_ASSERT_EQUAL(ip, 0);
    CU_ASSERT_EQUAL(brk_url_canon_host("10.0.0.1", 8, out, sizeof out, &ip, err, sizeof err), 0);
    CU_ASSERT_EQUAL(ip, 4);
    /* Cyrillic capital and small letters fold to the same A-label. */
    CU_ASSERT_EQUAL(brk_url_canon_host("\xd0\x90pple", 6, out, sizeof out, &ip, err, sizeof err),
                    0);
    CU_ASSERT_STRING_EQUAL(out, "xn--pple-43d");
    CU_ASSERT_EQUAL(brk_url_canon_host("", 0, out, sizeof out, &ip, err, sizeof err),
                    BRK_URL_EHOST);
}

/* Accepted URLs cut at every length: no crash, and any accepted prefix is
 * idempotent. (The parser is not incremental; this is its "every split".) */
static void test_truncations(void)
{
    struct brk_url *u = malloc(sizeof *u), *v = malloc(sizeof *v);
    char err[256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        for (size_t k = 0; k <= n; k++) {
            char *copy = malloc(k ? k : 1); /* exact size: ASan catches overreads */
            memcpy(copy, cases[i].in, k);
            if (brk_url_parse(copy, k, u, err, sizeof err) == 0) {
                CU_ASSERT_EQUAL(
                    brk_url_parse(u->canonical, strlen(u->canonical), v, err, sizeof err), 0);
                CU_ASSERT_STRING_EQUAL(v->canonical, u->canonical);
            }
            free(copy);
        }
    }
    free(u);
    free(v);
}

/* Seeded mutations of the corpus. Accepted results must be idempotent and
 * must never contain what the rules forbid. */
static void test_mutations(void)
{
    static const char inject[] = "@#:/\\[]%.?*xX0 \xc3\xbc\xff\x80-_~2eEfF";
    struct brk_url *u = malloc(sizeof *u), *v = malloc(sizeof *v);
    char buf[512], err[256];
    uint32_t seed = 12345;
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (int it = 0; it < 20000; it++) {
        seed = seed * 1103515245u + 12345u;
        const char *base = cases[(seed >> 8) % (sizeof cases / sizeof cases[0])].in;
        size_t n = strlen(base);
        memcpy(buf, base, n);
        int edits = 1 + (int)((seed >> 20) % 3);
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = n ? (seed >> 8) % (n + 1) : 0;
            char c = inject[(seed >> 16) % (sizeof inject - 1)];
            switch ((seed >> 28) % 3) {
            case 0: /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, n - pos);
                    buf[pos] = c;
                    n++;
                }
                break;
            case 1: /* replace */
                if (pos < n) buf[pos] = c;
                break;
            default: /* delete */
                if (pos < n) {
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                }
            }
        }
        if (brk_url_parse(buf, n, u, err, sizeof err) != 0) continue;
        CU_ASSERT_EQUAL(brk_url_parse(u->canonical, strlen(u->canonical), v, err, sizeof err), 0);
        CU_ASSERT_STRING_EQUAL(v->canonical, u->canonical);
        CU_ASSERT_PTR_NULL(strpbrk(u->canonical, "#\\ "));
        CU_ASSERT_PTR_NULL(memchr(u->canonical, '@', strcspn(u->canonical + 6, "/") + 6));
        CU_ASSERT_PTR_NULL(strpbrk(u->host, "ABCDEFGHIJKLMNOPQRSTUVWXYZ%*"));
        CU_ASSERT(strncmp(u->canonical, u->display, strlen(u->display)) == 0);
        CU_ASSERT_EQUAL(u->target[0], '/');
        for (const char *p = u->canonical; *p; p++)
            CU_ASSERT((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
    }
    free(u);
    free(v);
}

int suite_url(void)
{
    CU_pSuite s = CU_add_suite("url", NULL, NULL);
    if (!s || !CU_add_test(s, "canonicalisation corpus", test_corpus) ||
        !CU_add_test(s, "fields and errors", test_fields) ||
        !CU_add_test(s, "length limits", test_lengths) ||
        !CU_add_test(s, "RFC 3492 punycode vectors", test_punycode) ||
        !CU_add_test(s, "host canonicalisation", test_canon_host) ||
        !CU_add_test(s, "every truncation", test_truncations) ||
        !CU_add_test(s, "seeded mutations", test_mutations))
        return CU_get_error();
    return 0;
}

/* URL parsing and canonicalisation (see url.h for every rule).
 *
 * Layer: broker/, pure C: no I/O, no allocation, no libwebsockets, no Lua.
 * inet_pton/inet_ntop are used as pure text<->bytes converters.
 *
 * The parser is a single left-to-right pass over a bounded input: global byte
 * screening, scheme, authority (userinfo check, host, port), then path and
 * query normalisation and dot-segment removal. Every output buffer is written
 * with an explicit bound; overflow is reported as BRK_URL_ETOOLONG. */
#include "broker/url.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LABEL_MAX 63  /* bytes per DNS label */
#define LABEL_CPS 256 /* code points accepted per input label before "too long" */

const char *brk_url_strerror(int code)
{
    switch (code) {
#define BRK_URL_X(name, val, text)                                                                 \
    case val:                                                                                      \
        return text;
        BRK_URL_ERRORS(BRK_URL_X)
#undef BRK_URL_X
    default:
        return "unknown error";
    }
}

/* Writes a reason into err (if any room) and returns code. */
static int fail(int code, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *err, size_t errcap, const char *fmt, ...)
{
    if (err && errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_unreserved(int c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int lower_ascii(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* ---- Punycode (RFC 3492 section 6.3) ---------------------------------- */

enum {
    PC_BASE = 36,
    PC_TMIN = 1,
    PC_TMAX = 26,
    PC_SKEW = 38,
    PC_DAMP = 700,
    PC_INITIAL_BIAS = 72,
    PC_INITIAL_N = 128,
};

static uint32_t pc_adapt(uint32_t delta, uint32_t numpoints, int firsttime)
{
    uint32_t k = 0;
    delta = firsttime ? delta / PC_DAMP : delta / 2;
    delta += delta / numpoints;
    while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
        delta /= PC_BASE - PC_TMIN;
        k += PC_BASE;
    }
    return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static char pc_digit(uint32_t d)
{
    return (char)(d < 26 ? 'a' + d : '0' + (d - 26));
}

int brk_url_punycode_encode(const uint32_t *cp, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    uint32_t b = 0;
    if (cap == 0) return BRK_URL_ETOOLONG;
    if (n > 0xFFFFu) return BRK_URL_EHOST;
    for (size_t i = 0; i < n; i++) {
        if (cp[i] > 0x10FFFF || (cp[i] >= 0xD800 && cp[i] <= 0xDFFF)) return BRK_URL_EHOST;
        if (cp[i] < 0x80) {
            if (o + 1 >= cap) return BRK_URL_ETOOLONG;
            out[o++] = (char)cp[i];
            b++;
        }
    }
    uint32_t h = b;
    if (b > 0) {
        if (o + 1 >= cap) return BRK_URL_ETOOLONG;
        out[o++] = '-';
    }
    uint32_t nn = PC_INITIAL_N, delta = 0, bias = PC_INITIAL_BIAS;
    while (h < n) {
        uint32_t m = UINT32_MAX;
        for (size_t i = 0; i < n; i++)
            if (cp[i] >= nn && cp[i] < m) m = cp[i];
        if ((uint64_t)delta + (uint64_t)(m - nn) * (h + 1) > UINT32_MAX) return BRK_URL_EHOST;
        delta += (m - nn) * (h + 1);
        nn = m;
        for (size_t i = 0; i < n; i++) {
            if (cp[i] < nn && ++delta == 0) return BRK_URL_EHOST;
            if (cp[i] != nn) continue;
            uint32_t q = delta;
            for (uint32_t k = PC_BASE;; k += PC_BASE) {
                uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
                if (q < t) break;
                if (o + 1 >= cap) return BRK_URL_ETOOLONG;
                out[o++] = pc_digit(t + (q - t) % (PC_BASE - t));
                q = (q - t) / (PC_BASE - t);
            }
            if (o + 1 >= cap) return BRK_URL_ETOOLONG;
            out[o++] = pc_digit(q);
            bias = pc_adapt(delta, h + 1, h == b);
            delta = 0;
            h++;
        }
        delta++;
        nn++;
    }
    out[o] = '\0';
    if (outlen) *outlen = o;
    return 0;
}

/* ---- Host names -------------------------------------------------------- */

/* Strict UTF-8 decoding of one code point at s[*i] (i < n). Returns the code
 * point and advances *i, or returns UINT32_MAX for invalid input (overlong,
 * surrogate, above U+10FFFF, truncated). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    unsigned c = s[*i];
    uint32_t cp, min;
    size_t len;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return UINT32_MAX;
    }
    if (n - *i < len) return UINT32_MAX;
    for (size_t k = 1; k < len; k++) {
        unsigned cc = s[*i + k];
        if ((cc & 0xC0) != 0x80) return UINT32_MAX;
        cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return UINT32_MAX;
    *i += len;
    return cp;
}

/* Simple lowercase mapping for the scripts we know (see url.h); other code
 * points are returned unchanged. */
static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80) return (uint32_t)lower_ascii((int)c);
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
    if (c >= 0x100 && c <= 0x17F) {
        if ((c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) &&
            (c % 2) == 0)
            return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c % 2) == 1)
            return c + 1;
        if (c == 0x178) return 0xFF;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
    if (c >= 0x410 && c <= 0x42F) return c + 0x20;
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;
    return c;
}

/* Non-ASCII code points that are refused in host names because they are
 * invisible, spaces, dot or slash look-alikes, or otherwise confusing. */
static int cp_refused(uint32_t c)
{
    static const uint32_t ranges[][2] = {
        {0x80, 0xA0},        /* C1 controls, no-break space */
        {0xAD, 0xAD},        /* soft hyphen */
        {0x34F, 0x34F},      /* combining grapheme joiner */
        {0x115F, 0x1160},    /* Hangul fillers */
        {0x1680, 0x1680},    /* Ogham space */
        {0x180E, 0x180E},    /* Mongolian vowel separator */
        {0x2000, 0x200F},    /* spaces, zero-width, LRM/RLM */
        {0x2024, 0x2024},    /* one dot leader */
        {0x2028, 0x202F},    /* separators, bidi embeddings, narrow nbsp */
        {0x2044, 0x2044},    /* fraction slash */
        {0x205F, 0x206F},    /* math space, invisible operators, bidi isolates */
        {0x2100, 0x2101},    /* account of / addressed to (contain '/') */
        {0x2105, 0x2106},    /* care of / cada una (contain '/') */
        {0x2215, 0x2215},    /* division slash */
        {0x29F8, 0x29F8},    /* big solidus */
        {0x3000, 0x3002},    /* ideographic space, comma, full stop */
        {0x3164, 0x3164},    /* Hangul filler */
        {0xE000, 0xF8FF},    /* private use */
        {0xFDD0, 0xFDEF},    /* noncharacters */
        {0xFE00, 0xFE0F},    /* variation selectors */
        {0xFE50, 0xFE52},    /* small comma, small full stop */
        {0xFEFF, 0xFEFF},    /* byte order mark / ZWNBSP */
        {0xFF00, 0xFFFF},    /* fullwidth/halfwidth forms, specials */
        {0xE0000, 0xE0FFF},  /* tags, variation selectors supplement */
        {0xF0000, 0x10FFFF}, /* private use planes */
    };
    if ((c & 0xFFFE) == 0xFFFE) return 1; /* U+xFFFE / U+xFFFF noncharacters in every plane */
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (c >= ranges[i][0] && c <= ranges[i][1]) return 1;
    return 0;
}

static int is_host_ascii(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || is_digit((int)c) || c == '-' || c == '_';
}

/* Does this (lowercased) label look like a number to an IPv4 parser? */
static int label_is_numeric(const char *l, size_t n)
{
    size_t i = 0;
    if (n >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (i = 2; i < n; i++)
            if (hex_val((unsigned char)l[i]) < 0) return 0;
        return 1;
    }
    for (i = 0; i < n; i++)
        if (!is_digit((unsigned char)l[i])) return 0;
    return n > 0;
}

/* Strict dotted-decimal IPv4: four parts 0..255, no leading zeros. */
static int parse_ipv4_strict(const char *h, size_t n, unsigned char out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit((unsigned char)h[i])) {
            v = v * 10 + (unsigned)(h[i] - '0');
            if (v > 255) return -1;
            i++;
        }
        size_t len = i - start;
        if (len == 0 || (len > 1 && h[start] == '0')) return -1;
        out[part] = (unsigned char)v;
        if (part < 3) {
            if (i >= n || h[i] != '.') return -1;
            i++;
        }
    }
    return i == n ? 0 : -1;
}

/* Appends one canonical label (lowercase ASCII or xn--A-label) to out. */
static int canon_label(const char *l, size_t n, char *out, size_t cap, size_t *o, char *err,
                       size_t errcap)
{
    uint32_t cps[LABEL_CPS];
    size_t ncp = 0, i = 0;
    int non_ascii = 0;
    while (i < n) {
        uint32_t c = utf8_next((const unsigned char *)l, n, &i);
        if (c == UINT32_MAX)
            return fail(BRK_URL_EHOST, err, errcap, "host name is not valid UTF-8");
        if (ncp == LABEL_CPS)
            return fail(BRK_URL_EHOST, err, errcap, "host name label longer than 63 bytes");
        c = fold_cp(c);
        if (c < 0x80) {
            if (!is_host_ascii(c))
                return fail(BRK_URL_EHOST, err, errcap,
                            "host name contains a character other than letters, digits, '-' "
                            "and '_'");
        } else {
            if (cp_refused(c))
                return fail(BRK_URL_EHOST, err, errcap,
                            "host name contains U+%04X, which is not allowed (invisible, space, "
                            "dot/slash look-alike or fullwidth form)",
                            (unsigned)c);
            non_ascii = 1;
        }
        cps[ncp++] = c;
    }
    if (cps[0] == '-' || cps[ncp - 1] == '-')
        return fail(BRK_URL_EHOST, err, errcap, "host name label starts or ends with '-'");
    char lab[LABEL_MAX + 2];
    size_t llen = 0;
    if (non_ascii) {
        memcpy(lab, "xn--", 4);
        int r = brk_url_punycode_encode(cps, ncp, lab + 4, sizeof lab - 4, &llen);
        if (r < 0)
            return fail(BRK_URL_EHOST, err, errcap,
                        "international host name label longer than 63 bytes as an A-label");
        llen += 4;
    } else {
        if (ncp > LABEL_MAX)
            return fail(BRK_URL_EHOST, err, errcap, "host name label longer than 63 bytes");
        for (size_t k = 0; k < ncp; k++)
            lab[llen++] = (char)cps[k];
    }
    if (llen > LABEL_MAX)
        return fail(BRK_URL_EHOST, err, errcap, "host name label longer than 63 bytes");
    if (*o + llen + 1 > cap)
        return fail(BRK_URL_EHOST, err, errcap, "host name longer than %d bytes", BRK_URL_HOST_MAX);
    memcpy(out + *o, lab, llen);
    *o += llen;
    out[*o] = '\0';
    return 0;
}

int brk_url_canon_host(const char *h, size_t n, char *out, size_t cap, int *is_ip, char *err,
                       size_t errcap)
{
    if (cap == 0) return BRK_URL_ETOOLONG;
    out[0] = '\0';
    *is_ip = 0;
    if (n > 0 && h[n - 1] == '.') n--;
    if (n == 0) return fail(BRK_URL_EHOST, err, errcap, "empty host");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '%')
            return fail(BRK_URL_EHOST, err, errcap, "percent-encoding in the host is not allowed");
        if (c <= 0x20 || c == 0x7F)
            return fail(BRK_URL_EHOST, err, errcap, "host contains a control character or space");
    }
    size_t last = n;
    while (last > 0 && h[last - 1] != '.')
        last--;
    if (label_is_numeric(h + last, n - last)) {
        unsigned char a[4];
        if (parse_ipv4_strict(h, n, a) < 0)
            return fail(BRK_URL_EIP, err, errcap,
                        "IPv4 address must be four decimal numbers 0-255 without leading zeros "
                        "(a.b.c.d)");
        int w = snprintf(out, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        if (w < 0 || (size_t)w >= cap) return BRK_URL_ETOOLONG;
        *is_ip = 4;
        return 0;
    }
    size_t o = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] != '.') continue;
        if (i == start) return fail(BRK_URL_EHOST, err, errcap, "host name has an empty label");
        if (o > 0) {
            if (o + 3 > cap)
                return fail(BRK_URL_EHOST, err, errcap, "host name longer than %d bytes",
                            BRK_URL_HOST_MAX);
            out[o++] = '.';
        }
        int r = canon_label(h + start, i - start, out, cap, &o, err, errcap);
        if (r < 0) return r;
        start = i + 1;
    }
    if (o > BRK_URL_HOST_MAX)
        return fail(BRK_URL_EHOST, err, errcap, "host name longer than %d bytes", BRK_URL_HOST_MAX);
    return 0;
}

/* ---- Path and query ------------------------------------------------------ */

/* Characters that stay literal in a path (query adds '?'): unreserved,
 * sub-delims, ':' '@' '/'. '%' is handled separately. */
static int path_literal(int c, int query)
{
    if (is_unreserved(c)) return 1;
    if (strchr("!$&'()*+,;=:@/", c) && c != '\0') return 1;
    return query && c == '?';
}

/* Normalises percent-encoding of in[0..n) into out (bound cap incl. NUL). */
static int norm_pct(const char *in, size_t n, int query, char *out, size_t cap, size_t *olen,
                    char *err, size_t errcap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = *olen;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            int h1 = i + 2 < n ? hex_val((unsigned char)in[i + 1]) : -1;
            int h2 = h1 >= 0 ? hex_val((unsigned char)in[i + 2]) : -1;
            if (h2 < 0)
                return fail(BRK_URL_EPATH, err, errcap,
                            "'%%' in path or query must be followed by two hex digits");
            c = h1 * 16 + h2;
            i += 2;
            if (is_unreserved(c)) {
                if (o + 1 >= cap) goto toolong;
                out[o++] = (char)c;
                continue;
            }
        } else if (path_literal(c, query)) {
            if (o + 1 >= cap) goto toolong;
            out[o++] = (char)c;
            continue;
        }
        if (o + 3 >= cap) goto toolong;
        out[o++] = '%';
        out[o++] = hex[c >> 4];
        out[o++] = hex[c & 15];
    }
    out[o] = '\0';
    *olen = o;
    return 0;
toolong:
    return fail(BRK_URL_ETOOLONG, err, errcap, "URL longer than %d bytes after canonicalisation",
                BRK_URL_MAX);
}

/* RFC 3986 5.2.4 remove_dot_segments for a path that starts with '/'.
 * in is modified; out has at least strlen(in)+1 bytes. */
static void remove_dots(char *in, char *out)
{
    size_t i = 0, o = 0, n = strlen(in);
    while (i < n) {
        const char *p = in + i;
        size_t rest = n - i;
        if (rest >= 3 && memcmp(p, "/./", 3) == 0) {
            i += 2;
        } else if (rest == 2 && memcmp(p, "/.", 2) == 0) {
            i += 1;
            in[i] = '/';
        } else if ((rest >= 4 && memcmp(p, "/../", 4) == 0) ||
                   (rest == 3 && memcmp(p, "/..", 3) == 0)) {
            if (rest == 3) {
                i += 2;
                in[i] = '/';
            } else {
                i += 3;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0) o--;
        } else {
            out[o++] = in[i++];
            while (i < n && in[i] != '/')
                out[o++] = in[i++];
        }
    }
    out[o] = '\0';
}

/* ---- Whole URL ----------------------------------------------------------- */

static int parse_port(const char *p, size_t n, uint16_t *port, char *err, size_t errcap)
{
    unsigned v = 0;
    if (n == 0) return fail(BRK_URL_EPORT, err, errcap, "empty port after ':'");
    if (n > 5) return fail(BRK_URL_EPORT, err, errcap, "port must be a decimal number 1-65535");
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return fail(BRK_URL_EPORT, err, errcap, "port must be a decimal number 1-65535");
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return fail(BRK_URL_EPORT, err, errcap, "port must be a decimal number 1-65535");
    *port = (uint16_t)v;
    return 0;
}

static int parse_ipv6(const char *p, size_t n, char *out, size_t cap, char *err, size_t errcap)
{
    char tmp[64];
    unsigned char bin[16];
    if (n == 0 || n >= sizeof tmp) return fail(BRK_URL_EIP, err, errcap, "invalid IPv6 address");
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%')
            return fail(BRK_URL_EIP, err, errcap, "IPv6 zone identifiers are not allowed");
        if (hex_val(c) < 0 && c != ':' && c != '.')
            return fail(BRK_URL_EIP, err, errcap, "invalid IPv6 address");
    }
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET6, tmp, bin) != 1 || !inet_ntop(AF_INET6, bin, out, (socklen_t)cap))
        return fail(BRK_URL_EIP, err, errcap, "invalid IPv6 address");
    return 0;
}

static int parse_url(const char *s, size_t n, struct brk_url *u, char *err, size_t errcap)
{
    char path[BRK_URL_MAX + 1];
    size_t i, plen = 0;
    int r;

    memset(u, 0, sizeof *u);
    if (err && errcap > 0) err[0] = '\0';
    if (!s) return fail(BRK_URL_ESYNTAX, err, errcap, "no URL");
    if (n > BRK_URL_MAX)
        return fail(BRK_URL_ETOOLONG, err, errcap, "URL longer than %d bytes", BRK_URL_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F)
            return fail(BRK_URL_ESYNTAX, err, errcap,
                        "URL contains whitespace or a control character");
        if (c == '\\') return fail(BRK_URL_ESYNTAX, err, errcap, "URL contains a backslash");
        if (c == '#')
            return fail(BRK_URL_EFRAGMENT, err, errcap, "URL fragments ('#') are not allowed");
    }

    /* Scheme. */
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return fail(BRK_URL_ESYNTAX, err, errcap, "URL has no scheme (expected ws:// or wss://)");
    size_t sl = (size_t)(colon - s);
    if (sl == 2 && lower_ascii(s[0]) == 'w' && lower_ascii(s[1]) == 's') {
        memcpy(u->scheme, "ws", 3);
    } else if (sl == 3 && lower_ascii(s[0]) == 'w' && lower_ascii(s[1]) == 's' &&
               lower_ascii(s[2]) == 's') {
        memcpy(u->scheme, "wss", 4);
        u->secure = 1;
    } else {
        return fail(BRK_URL_ESCHEME, err, errcap, "only ws:// and wss:// URLs are allowed");
    }
    if (n - sl < 3 || colon[1] != '/' || colon[2] != '/')
        return fail(BRK_URL_ESYNTAX, err, errcap, "expected \"//\" after \"%s:\"", u->scheme);

    /* Authority: up to the first '/' or '?'. */
    size_t a = sl + 3, e = a;
    while (e < n && s[e] != '/' && s[e] != '?')
        e++;
    if (memchr(s + a, '@', e - a))
        return fail(BRK_URL_EUSERINFO, err, errcap,
                    "user names and passwords in URLs are not allowed");
    if (a == e) return fail(BRK_URL_EHOST, err, errcap, "URL has an empty host");
    size_t hend, pstart = 0;
    int have_port = 0;
    if (s[a] == '[') {
        const char *rb = memchr(s + a, ']', e - a);
        if (!rb) return fail(BRK_URL_EIP, err, errcap, "IPv6 address is missing its ']'");
        hend = (size_t)(rb - s);
        r = parse_ipv6(s + a + 1, hend - a - 1, u->host, sizeof u->host, err, errcap);
        if (r < 0) return r;
        u->host_is_ip = 6;
        if (hend + 1 < e) {
            if (s[hend + 1] != ':')
                return fail(BRK_URL_ESYNTAX, err, errcap, "unexpected text after IPv6 address");
            have_port = 1;
            pstart = hend + 2;
        }
    } else {
        const char *pc = memchr(s + a, ':', e - a);
        hend = pc ? (size_t)(pc - s) : e;
        if (pc) {
            have_port = 1;
            pstart = hend + 1;
        }
        if (hend == a) return fail(BRK_URL_EHOST, err, errcap, "URL has an empty host");
        r = brk_url_canon_host(s + a, hend - a, u->host, sizeof u->host, &u->host_is_ip, err,
                               errcap);
        if (r < 0) return r;
    }
    u->port = u->secure ? 443 : 80;
    if (have_port) {
        r = parse_port(s + pstart, e - pstart, &u->port, err, errcap);
        if (r < 0) return r;
    }
    int default_port = u->port == (u->secure ? 443 : 80);
    int w;
    if (u->host_is_ip == 6)
        w = default_port ? snprintf(u->host_header, sizeof u->host_header, "[%s]", u->host)
                         : snprintf(u->host_header, sizeof u->host_header, "[%s]:%u", u->host,
                                    (unsigned)u->port);
    else
        w = default_port ? snprintf(u->host_header, sizeof u->host_header, "%s", u->host)
                         : snprintf(u->host_header, sizeof u->host_header, "%s:%u", u->host,
                                    (unsigned)u->port);
    if (w < 0 || (size_t)w >= sizeof u->host_header)
        return fail(BRK_URL_ETOOLONG, err, errcap, "host too long");

    /* Path, then query. */
    size_t q = e;
    while (q < n && s[q] != '?')
        q++;
    if (q == e) {
        path[0] = '/';
        path[1] = '\0';
        plen = 1;
    } else {
        r = norm_pct(s + e, q - e, 0, path, sizeof path, &plen, err, errcap);
        if (r < 0) return r;
    }
    remove_dots(path, u->target);
    size_t tlen = strlen(u->target);
    if (q < n) {
        if (tlen + 1 >= sizeof u->target)
            return fail(BRK_URL_ETOOLONG, err, errcap,
                        "URL longer than %d bytes after canonicalisation", BRK_URL_MAX);
        u->target[tlen++] = '?';
        r = norm_pct(s + q + 1, n - q - 1, 1, u->target, sizeof u->target, &tlen, err, errcap);
        if (r < 0) return r;
    }

    w = snprintf(u->canonical, sizeof u->canonical, "%s://%s%s", u->scheme, u->host_header,
                 u->target);
    if (w < 0 || (size_t)w >= sizeof u->canonical)
        return fail(BRK_URL_ETOOLONG, err, errcap,
                    "URL longer than %d bytes after canonicalisation", BRK_URL_MAX);
    size_t dlen = strcspn(u->canonical, "?");
    memcpy(u->display, u->canonical, dlen);
    u->display[dlen] = '\0';
    return 0;
}

int brk_url_parse(const char *s, size_t n, struct brk_url *u, char *err, size_t errcap)
{
    int r = parse_url(s, n, u, err, errcap);
    if (r < 0) memset(u, 0, sizeof *u);
    return r;
}

/* URL parsing and canonicalisation for WebSocket dials.
 *
 * Layer: broker/, pure C. No I/O, no allocation, no libwebsockets, no Lua.
 * The broker parses a script's URL exactly once with brk_url_parse(); the
 * policy engine matches the canonical string and the connection code dials
 * host/port/target from the same struct, so what is checked is what is used.
 *
 * Canonical form (decisions, all tested in tests/unit/test_url.c):
 * - Scheme: only "ws" and "wss", case-insensitive, written lowercase; the
 *   scheme must be followed by "//".
 * - Rejected anywhere in the input: bytes 0x00-0x20 and 0x7F (controls and
 *   whitespace), backslash, '#' (fragments). Rejected in the authority: '@'
 *   (any user information), '%' in a host name (no percent-decoding of
 *   hosts), IPv6 zone identifiers, an empty host, an empty port.
 * - Host names: ASCII is lowercased; labels may hold a-z 0-9 '-' '_' and not
 *   start or end with '-'; 1..63 bytes per label, 253 in total; one trailing
 *   dot is dropped ("example.com." is "example.com"); empty labels are errors.
 * - Non-ASCII host labels (UTF-8) are lowercased where we know the mapping
 *   (Latin-1, Latin Extended-A, basic Greek, basic Cyrillic) and converted to
 *   A-labels ("xn--" + RFC 3492 Punycode) by our own encoder. No Unicode
 *   normalisation (NFC/UTS 46) is done: a differently composed or cased name
 *   becomes a different A-label, i.e. a different DNS name, so it can never
 *   reach a host that a pattern names in another spelling. Rejected as
 *   confusing or invisible: C1 controls, Unicode spaces, zero-width and bidi
 *   controls, soft hyphen, variation selectors, ideographic/fullwidth/
 *   halfwidth/small full stops and one-dot leader, the whole fullwidth and
 *   halfwidth forms block (U+FF00-U+FFEF), slash look-alikes, private use,
 *   tags, noncharacters and invalid UTF-8.
 * - IPv4: a host whose last label is numeric (digits, or 0x + hex) must be
 *   exactly four decimal numbers 0..255 without leading zeros. Integer,
 *   hexadecimal, octal and short forms (2130706433, 0x7f.0.0.1, 0177.0.0.1,
 *   127.1) are rejected rather than reinterpreted.
 * - IPv6: "[...]" literals parsed with inet_pton and printed with inet_ntop
 *   (RFC 5952: lowercase, "::" compression). u->host holds it without
 *   brackets; canonical URL and Host header put the brackets back.
 * - Port: 1..5 decimal digits, 1..65535; the default (ws 80, wss 443) is
 *   omitted from the canonical URL and the Host header.
 * - Path and query: "%xx" escapes must have two hex digits; escapes of
 *   unreserved characters (ALPHA DIGIT - . _ ~) are decoded, all others are
 *   kept with uppercase hex (so %2F stays %2F); bytes that may not appear
 *   literally (non-ASCII, " < > [ ] ^ ` { | }) are percent-encoded. Then the
 *   dot-segments of the path are resolved (RFC 3986 5.2.4: "/a/../b" is "/b",
 *   "/a/%2e%2E/b" too, ".." never climbs above "/"). An empty path is "/".
 *   A '?' is kept even when the query is empty.
 * - Length: input and every output string at most BRK_URL_MAX bytes. */
#ifndef BRK_URL_H
#define BRK_URL_H

#include <stddef.h>
#include <stdint.h>

#define BRK_URL_MAX      8192 /* bytes, longest accepted URL (input and canonical) */
#define BRK_URL_HOST_MAX 253  /* bytes, longest canonical host name */

/* Error codes of this module: name, value, short text. */
#define BRK_URL_ERRORS(X)                                                                          \
    X(ESYNTAX, -1, "malformed URL")                                                                \
    X(ESCHEME, -2, "unsupported scheme")                                                           \
    X(EUSERINFO, -3, "user information in URL not allowed")                                        \
    X(EFRAGMENT, -4, "fragment in URL not allowed")                                                \
    X(EHOST, -5, "invalid host")                                                                   \
    X(EIP, -6, "invalid or non-canonical IP address")                                              \
    X(EPORT, -7, "invalid port")                                                                   \
    X(EPATH, -8, "invalid path or query")                                                          \
    X(ETOOLONG, -9, "URL too long")

enum brk_url_err {
#define BRK_URL_X(name, val, text) BRK_URL_##name = val,
    BRK_URL_ERRORS(BRK_URL_X)
#undef BRK_URL_X
};

/* One parsed, canonical ws/wss URL. Plain data (no pointers): copyable with
 * memcpy, about 25 KiB. All strings are NUL-terminated. */
struct brk_url {
    char scheme[4];                         /* "ws" or "wss" */
    int secure;                             /* 1 for wss (TLS), 0 for ws */
    char host[BRK_URL_HOST_MAX + 1];        /* canonical host; IPv6 without brackets */
    int host_is_ip;                         /* 0 for a name, 4 or 6 for an IP literal */
    uint16_t port;                          /* explicit port or the default 80/443 */
    char host_header[BRK_URL_HOST_MAX + 9]; /* Host header: host[:port if not default] */
    char target[BRK_URL_MAX + 1];           /* request target: path[?query], "/" if empty */
    char canonical[BRK_URL_MAX + 1];        /* scheme://host_header + target */
    char display[BRK_URL_MAX + 1];          /* canonical without the query, for logs/errors */
};

/* Parse and canonicalise the n bytes at s (no NUL needed; an embedded NUL is
 * an error). Returns 0 and fills *u, or a negative BRK_URL_E* code and writes
 * a user-readable reason to err (if errcap > 0; the input is never echoed).
 * *u is zeroed on failure. */
int brk_url_parse(const char *s, size_t n, struct brk_url *u, char *err, size_t errcap);

/* Canonicalise just a host name (no brackets, no port) as above into out
 * (cap bytes incl. NUL). *is_ip gets 0 or 4. Returns 0 or BRK_URL_E*. */
int brk_url_canon_host(const char *h, size_t n, char *out, size_t cap, int *is_ip, char *err,
                       size_t errcap);

/* RFC 3492 Punycode encoding of n code points (no "xn--" prefix) into out
 * (cap bytes incl. NUL). Basic code points are copied unchanged. Returns 0,
 * BRK_URL_ETOOLONG if out is too small, or BRK_URL_EHOST on overflow or an
 * invalid code point. *outlen (may be NULL) gets the length written. */
int brk_url_punycode_encode(const uint32_t *cp, size_t n, char *out, size_t cap, size_t *outlen);

/* Short text for a BRK_URL_E* code ("unknown error" otherwise). */
const char *brk_url_strerror(int code);

#endif

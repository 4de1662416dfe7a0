/* Receive-path benchmark of the WebSocket core (broker/ws.c).
 *
 * Layer: tests/bench. Builds about 64 MiB of unmasked server frames in memory
 * (16 B, 1 KiB and 64 KiB messages, binary and ASCII text), feeds them to
 * ws_feed in 64 KiB pieces as a socket read loop would, and compares with
 * memcpy of the same pieces. Two receive figures: "feed" delivers chunks to a
 * callback that only counts them (the core's own cost), "feed+copy" copies
 * each chunk out as the broker does when it writes to a worker ring.
 * Usage: bench_ws [MiB per run, default 64]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/ws.h"

struct sink {
    uint64_t bytes; /* payload bytes delivered */
    uint64_t msgs;  /* messages completed */
    uint8_t *dst;   /* copy target when copying, else NULL (owned by main) */
    size_t dst_cap; /* bytes at dst */
    size_t dst_off; /* next write offset (wraps) */
};

static int on_msg(void *ctx, int op, const uint8_t *p, size_t n, int fin)
{
    struct sink *s = ctx;
    s->bytes += n;
    s->msgs += (uint64_t)fin;
    if (s->dst) {
        if (s->dst_off + n > s->dst_cap) s->dst_off = 0;
        memcpy(s->dst + s->dst_off, p, n);
        s->dst_off += n;
    }
    return 0;
}

static void on_close(void *ctx, int clean, int code, const char *r, size_t n, int by_peer)
{
    fprintf(stderr, "unexpected close %d: %.*s\n", code, (int)n, r);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct ws *open_ws(struct sink *s)
{
    struct ws_opts o;
    memset(&o, 0, sizeof o);
    o.host = "bench";
    o.path = "/";
    o.read_limit = 1 << 20;
    struct ws_callbacks cb = {s, NULL, on_msg, NULL, on_close};
    struct ws *w = ws_new(&o, &cb);
    if (!w) exit(1);
    size_t len;
    const char *req = (const char *)ws_out_peek(w, &len);
    const char *k = memmem(req, len, "Sec-WebSocket-Key: ", 19);
    if (!k) exit(1);
    k += 19;
    char acc[29], resp[256];
    ws_accept_key(k, 24, acc);
    ws_out_consume(w, len);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    if (ws_feed(w, (const uint8_t *)resp, (size_t)n) != n || ws_state(w) != WS_OPEN) exit(1);
    return w;
}

/* Fills buf with frames of msg bytes each; returns bytes used. */
static size_t build(uint8_t *buf, size_t cap, size_t msg, int text)
{
    size_t off = 0;
    while (off + msg + 10 <= cap) {
        buf[off] = text ? 0x81 : 0x82;
        size_t h = 2;
        if (msg < 126) {
            buf[off + 1] = (uint8_t)msg;
        } else if (msg <= 0xFFFF) {
            buf[off + 1] = 126;
            buf[off + 2] = (uint8_t)(msg >> 8);
            buf[off + 3] = (uint8_t)msg;
            h = 4;
        } else {
            buf[off + 1] = 127;
            for (int i = 0; i < 8; i++)
                buf[off + 2 + i] = (uint8_t)((uint64_t)msg >> (56 - 8 * i));
            h = 10;
        }
        for (size_t i = 0; i < msg; i++)
            buf[off + h + i] = (uint8_t)('a' + (off + i) % 26);
        off += h + msg;
    }
    return off;
}

#define PIECE 65536

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    size_t cap = mib << 20;
    uint8_t *buf = malloc(cap), *dst = malloc(cap > (64u << 20) ? (64u << 20) : cap);
    if (!buf || !dst) return 1;
    size_t dst_cap = cap > (64u << 20) ? (64u << 20) : cap;
    static const size_t sizes[] = {16, 1024, 65536};
    printf("%-12s %10s %10s %10s %10s %8s %8s\n", "message", "memcpy", "feed", "feed+copy",
           "Mmsg/s", "ratio1", "ratio2");
    for (int text = 0; text <= 1; text++) {
        for (size_t si = 0; si < 3; si++) {
            size_t n = build(buf, cap, sizes[si], text);
            double best_m = 1e9, best_f = 1e9, best_c = 1e9;
            uint64_t msgs = 0;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now();
                size_t doff = 0;
                for (size_t off = 0; off < n; off += PIECE) {
                    size_t k = n - off < PIECE ? n - off : PIECE;
                    if (doff + k > dst_cap) doff = 0;
                    memcpy(dst + doff, buf + off, k);
                    doff += k;
                }
                double t1 = now();
                if (t1 - t0 < best_m) best_m = t1 - t0;
                for (int copy = 0; copy <= 1; copy++) {
                    struct sink s = {0, 0, copy ? dst : NULL, dst_cap, 0};
                    struct ws *w = open_ws(&s);
                    double t2 = now();
                    for (size_t off = 0; off < n; off += PIECE) {
                        size_t k = n - off < PIECE ? n - off : PIECE;
                        if (ws_feed(w, buf + off, k) != (ssize_t)k) return 1;
                    }
                    double t3 = now();
                    ws_free(w);
                    msgs = s.msgs;
                    if (!copy && t3 - t2 < best_f) best_f = t3 - t2;
                    if (copy && t3 - t2 < best_c) best_c = t3 - t2;
                }
            }
            char label[32];
            snprintf(label, sizeof label, "%s %zu", text ? "text" : "binary", sizes[si]);
            double mb = (double)n / 1e6;
            printf("%-12s %8.0f MB/s %6.0f MB/s %6.0f MB/s %8.2f %8.2f %8.2f\n", label, mb / best_m,
                   mb / best_f, mb / best_c, (double)msgs / best_f / 1e6, best_m / best_f,
                   best_m / best_c);
            /* keep dst live so the copies are not optimised away */
            if (dst[dst_cap / 2] == 0xFF && dst[0] == 0xFF) puts("");
        }
    }
    printf("ratio1 = feed speed / memcpy speed; ratio2 = feed+copy speed / memcpy speed\n");
    free(buf);
    free(dst);
    return 0;
}

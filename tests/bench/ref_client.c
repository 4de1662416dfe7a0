/* The minimal C reference client of the end-to-end benchmarks: the practical
 * limit of a WebSocket client on this machine, against which every other
 * client's figure is printed as a ratio (tests/bench/run.sh).
 *
 * Layer: tests/bench. Plain sockets, blocking I/O, one connection; zlib for
 * the optional inflate. It does the least a correct client must: parse frame
 * headers (payloads are skipped in place, or inflated with --deflate),
 * answer nothing it does not need to. Masks are precomputed once.
 *
 * Usage: ref_client --port P --mode M --size S [--secs D] [--depth K] [--deflate]
 *   recv  GET /blast?size=S, count messages for D seconds
 *   raw   GET /blast?size=S, count bytes only (the server's own ceiling)
 *   echo  one message in flight to /echo: round trips/s, p50/p99 latency
 *   pipe  K messages in flight to /echo (default 100)
 *   send  messages to /sink for D seconds, then REPORT; rate counted by the server
 * Prints one line: RESULT msgs=N bytes=B secs=T p50_us=X p99_us=Y */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#define RBUF (1u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *m)
{
    fprintf(stderr, "ref_client: %s (%s)\n", m, strerror(errno));
    exit(1);
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("send");
        }
        b += w;
        n -= (size_t)w;
    }
}

/* Incremental frame parser state (server frames: unmasked). */
struct parser {
    uint8_t hdr[14];    /* partial header bytes */
    size_t hdr_len;     /* bytes in hdr */
    uint64_t left;      /* payload bytes of the current frame still to come */
    int in_frame;       /* 1 while inside a payload */
    int op, fin, rsv1;  /* of the current frame */
    uint64_t msgs;      /* complete data messages */
    uint64_t bytes;     /* data payload bytes (on the wire) */
    int closed;         /* close frame seen */
    int deflate;        /* inflate compressed messages */
    int msg_compressed; /* the current message has RSV1 */
    z_stream z;         /* inflater (no context takeover: reset per message) */
    uint8_t *zout;      /* scratch output (owned) */
    uint64_t plain;     /* inflated bytes */
    uint8_t ctl[128];   /* control frame payload */
    size_t ctl_len;
};

static void inflate_some(struct parser *ps, const uint8_t *p, size_t n)
{
    ps->z.next_in = (uint8_t *)p;
    ps->z.avail_in = (uInt)n;
    do {
        ps->z.next_out = ps->zout;
        ps->z.avail_out = RBUF;
        int r = inflate(&ps->z, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) {
            fprintf(stderr, "ref_client: inflate error %d\n", r);
            exit(1);
        }
        ps->plain += RBUF - ps->z.avail_out;
    } while (ps->z.avail_in > 0 || ps->z.avail_out == 0);
}

/* Feeds received bytes; counts complete messages. */
static void parse(struct parser *ps, const uint8_t *p, size_t n)
{
    while (n) {
        if (ps->in_frame) {
            size_t k = n < ps->left ? n : (size_t)ps->left;
            if (ps->op >= 8) {
                size_t c = k;
                if (ps->ctl_len + c > sizeof ps->ctl) c = sizeof ps->ctl - ps->ctl_len;
                memcpy(ps->ctl + ps->ctl_len, p, c);
                ps->ctl_len += c;
            } else {
                ps->bytes += k;
                if (ps->msg_compressed) inflate_some(ps, p, k);
            }
            p += k;
            n -= k;
            ps->left -= k;
            if (ps->left == 0) {
                ps->in_frame = 0;
                if (ps->op == 8) {
                    ps->closed = 1;
                    return;
                }
                if (ps->op < 8 && ps->fin) {
                    if (ps->msg_compressed) {
                        static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
                        inflate_some(ps, tail, 4);
                        inflateReset(&ps->z);
                    }
                    ps->msgs++;
                }
            }
            continue;
        }
        /* Fast path: whole small header available in place. */
        const uint8_t *h;
        size_t need = 2;
        if (ps->hdr_len == 0 && n >= 10) {
            h = p;
        } else {
            while (ps->hdr_len < 2 && n) {
                ps->hdr[ps->hdr_len++] = *p++;
                n--;
            }
            if (ps->hdr_len < 2) return;
            uint8_t l7 = ps->hdr[1] & 0x7f;
            need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            while (ps->hdr_len < need && n) {
                ps->hdr[ps->hdr_len++] = *p++;
                n--;
            }
            if (ps->hdr_len < need) return;
            h = ps->hdr;
        }
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        ps->op = h[0] & 0x0f;
        ps->fin = h[0] >> 7;
        if (ps->op == 1 || ps->op == 2) ps->msg_compressed = ps->deflate && (h[0] & 0x40);
        if (ps->op >= 8) ps->ctl_len = 0;
        if (h == p) {
            p += hl;
            n -= hl;
        }
        ps->hdr_len = 0;
        ps->left = len;
        ps->in_frame = 1;
        if (len == 0) {
            ps->in_frame = 0;
            if (ps->op == 8) {
                ps->closed = 1;
                return;
            }
            if (ps->op < 8 && ps->fin) ps->msgs++;
        }
    }
}

/* Builds one masked client frame of n payload bytes (pattern i % 251). */
static size_t build_frame(uint8_t *out, int op, const uint8_t *payload, size_t n)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t hl;
    out[0] = (uint8_t)(0x80 | op);
    if (n < 126) {
        out[1] = (uint8_t)(0x80 | n);
        hl = 2;
    } else if (n < 65536) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        hl = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(out + hl, key, 4);
    hl += 4;
    for (size_t i = 0; i < n; i++)
        out[hl + i] = payload[i] ^ key[i & 3];
    return hl + n;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int port = 0, depth = 100, deflate = 0;
    const char *mode = "recv";
    size_t size = 16;
    double secs = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--port"))
            port = atoi(v), i++;
        else if (!strcmp(a, "--mode"))
            mode = v, i++;
        else if (!strcmp(a, "--size"))
            size = strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--secs"))
            secs = atof(v), i++;
        else if (!strcmp(a, "--depth"))
            depth = atoi(v), i++;
        else if (!strcmp(a, "--deflate"))
            deflate = 1;
        else {
            fprintf(stderr, "usage: ref_client --port P --mode recv|raw|echo|pipe|send --size S "
                            "[--secs D] [--depth K] [--deflate]\n");
            return 64;
        }
    }
    if (depth < 1) depth = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const char *path = !strcmp(mode, "recv") || !strcmp(mode, "raw") ? "/blast"
                       : !strcmp(mode, "send")                       ? "/sink"
                                                                     : "/echo";
    char req[1024];
    int rl = snprintf(req, sizeof req,
                      "GET %s?size=%zu%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n%s\r\n",
                      path, size, deflate ? "&deflate=1" : "", port,
                      deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                "client_no_context_takeover; server_no_context_takeover\r\n"
                              : "");
    write_all(fd, req, (size_t)rl);
    uint8_t *buf = malloc(RBUF);
    size_t got = 0;
    uint8_t *hend = NULL;
    while (!hend) {
        ssize_t r = recv(fd, buf + got, RBUF - got, 0);
        if (r <= 0) die("handshake");
        got += (size_t)r;
        hend = memmem(buf, got, "\r\n\r\n", 4);
    }
    if (strncmp((char *)buf, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "ref_client: handshake refused\n");
        return 1;
    }
    size_t extra = got - (size_t)(hend + 4 - buf);
    struct parser ps;
    memset(&ps, 0, sizeof ps);
    ps.deflate = deflate;
    if (deflate) {
        if (inflateInit2(&ps.z, -15) != Z_OK) die("inflateInit");
        ps.zout = malloc(RBUF);
    }
    parse(&ps, hend + 4, extra);

    double t0 = now(), t1 = t0, deadline = t0 + secs;
    double *lat = NULL;
    size_t nlat = 0, caplat = 0;
    uint64_t rtt = 0;
    if (!strcmp(mode, "recv") || !strcmp(mode, "raw")) {
        uint64_t raw = 0;
        int raw_mode = !strcmp(mode, "raw");
        unsigned k = 0;
        for (;;) {
            ssize_t r = recv(fd, buf, RBUF, 0);
            if (r <= 0) break;
            if (raw_mode)
                raw += (uint64_t)r;
            else
                parse(&ps, buf, (size_t)r);
            if (ps.closed) break;
            if ((++k & 15) == 0 && now() >= deadline) break;
        }
        t1 = now();
        if (raw_mode) {
            size_t fl = size + (size < 126 ? 2 : size < 65536 ? 4 : 10);
            ps.bytes = raw;
            ps.msgs = raw / fl;
        }
    } else if (!strcmp(mode, "echo") || !strcmp(mode, "pipe")) {
        uint8_t *payload = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++)
            payload[i] = (uint8_t)(i % 251);
        int k = !strcmp(mode, "echo") ? 1 : depth;
        size_t flen0 = size + 14;
        uint8_t *frames = malloc(flen0 * (size_t)k);
        size_t flen = build_frame(frames, 2, payload, size);
        for (int i = 1; i < k; i++)
            memcpy(frames + (size_t)i * flen, frames, flen);
        write_all(fd, frames, flen * (size_t)k);
        uint64_t inflight = (uint64_t)k;
        double ts = t0;
        int sending = 1;
        while (inflight) {
            ssize_t r = recv(fd, buf, RBUF, 0);
            if (r <= 0) die("recv");
            uint64_t before = ps.msgs;
            parse(&ps, buf, (size_t)r);
            uint64_t done = ps.msgs - before;
            if (!done) continue;
            inflight -= done;
            rtt += done;
            double t = now();
            if (k == 1) {
                if (nlat == caplat) {
                    caplat = caplat ? caplat * 2 : 65536;
                    lat = realloc(lat, caplat * sizeof *lat);
                }
                lat[nlat++] = (t - ts) * 1e6;
            }
            if (sending && t >= deadline) sending = 0;
            if (sending) {
                ts = t;
                write_all(fd, frames, flen * (size_t)done);
                inflight += done;
            }
        }
        t1 = now();
        ps.msgs = rtt;
    } else if (!strcmp(mode, "send")) {
        uint8_t *payload = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++)
            payload[i] = (uint8_t)(i % 251);
        size_t flen = size + 14;
        size_t nf = (256u * 1024u) / flen;
        if (nf == 0) nf = 1;
        uint8_t *frames = malloc(flen * nf);
        flen = build_frame(frames, 2, payload, size);
        for (size_t i = 1; i < nf; i++)
            memcpy(frames + i * flen, frames, flen);
        unsigned it = 0;
        do {
            write_all(fd, frames, flen * nf);
        } while ((++it & 3) || now() < deadline);
        uint8_t rep[32];
        size_t rlen = build_frame(rep, 1, (const uint8_t *)"REPORT", 6);
        write_all(fd, rep, rlen);
        size_t n = 0;
        for (;;) {
            ssize_t r = recv(fd, buf + n, RBUF - n, 0);
            if (r <= 0) die("recv report");
            n += (size_t)r;
            if (n >= 2 && n >= 2u + (buf[1] & 0x7f)) break;
        }
        t1 = now();
        buf[2 + (buf[1] & 0x7f)] = 0;
        unsigned long long c = 0, b = 0;
        if (sscanf((char *)buf + 2, "count=%llu bytes=%llu", &c, &b) != 2) die("report");
        ps.msgs = c;
        ps.bytes = b;
    } else {
        fprintf(stderr, "ref_client: unknown mode %s\n", mode);
        return 64;
    }
    double p50 = 0, p99 = 0;
    if (nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_d);
        p50 = lat[nlat / 2];
        p99 = lat[(size_t)((double)nlat * 0.99)];
    }
    static const uint8_t cl[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    send(fd, cl, sizeof cl, MSG_NOSIGNAL);
    close(fd);
    printf("RESULT msgs=%llu bytes=%llu secs=%.6f p50_us=%.1f p99_us=%.1f\n",
           (unsigned long long)ps.msgs, (unsigned long long)(deflate ? ps.plain : ps.bytes),
           t1 - t0, p50, p99);
    return 0;
}

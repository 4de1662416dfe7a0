/* A fast loopback WebSocket server for the end-to-end benchmarks
 * (tests/bench/run.sh): one thread, one epoll set, many connections.
 *
 * Layer: tests/bench. Uses only libc, OpenSSL's SHA-1 (for the handshake) and
 * zlib; nothing of the broker. It must never be the bottleneck, so it does as
 * little as it can per message:
 *   /blast?size=S[&n=N][&deflate=1]  sends N messages of S binary bytes
 *        (N = 0 or absent: until the client goes away), written from one
 *        pre-framed block of repeated frames, then a close frame. With
 *        deflate=1 and a client that offers permessage-deflate, every message
 *        is the same compressible text compressed once (no context takeover
 *        both ways), so blasting it costs nothing per message either.
 *   /echo   sends every data frame back unmasked (pings get pongs).
 *   /sink   reads and counts; a text message "REPORT" is answered with
 *           "count=N bytes=B" (data messages and bytes before it).
 *   anything else: like /sink, so idle benchmark connections can park here
 *           (with deflate=1 it accepts permessage-deflate, for memory figures).
 * Prints "LISTENING <port>" on stdout when ready. Stops on SIGTERM/SIGINT.
 * Usage: bench_server [--port P] */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

/* Size a pre-framed blast block is filled up to (at least one frame). */
#define BLOCK_TARGET (256u * 1024u)
/* Largest frame payload accepted from a client (echo/sink). */
#define MAX_IN_FRAME (130u * 1024u * 1024u)

enum mode { M_HTTP, M_BLAST, M_ECHO, M_SINK };

/* One pre-framed block of identical server frames (cached per shape). */
struct block {
    uint32_t size;    /* payload bytes of one message (uncompressed) */
    int deflate;      /* 1: frames carry the compressed message with RSV1 */
    uint8_t *data;    /* the frames (owned) */
    size_t len;       /* bytes in data */
    size_t frame_len; /* bytes of one frame */
    struct block *next;
};

/* One client connection. */
struct conn {
    int fd;
    enum mode mode;
    uint8_t *in;             /* received bytes not yet parsed (owned) */
    size_t in_len;           /* bytes in `in` */
    size_t in_cap;           /* capacity of `in` */
    uint8_t *out;            /* bytes waiting to be written (owned) */
    size_t out_off;          /* first unwritten byte in out */
    size_t out_len;          /* end of valid bytes in out */
    size_t out_cap;          /* capacity of out */
    const struct block *blk; /* blast: the block being written (borrowed) */
    size_t blk_off;          /* blast: offset in the current block pass */
    uint64_t left;           /* blast: frames still to send (UINT64_MAX = unlimited) */
    int closing;             /* 1: close frame queued, close after it is written */
    int want_out;            /* 1: EPOLLOUT armed */
    uint64_t count;          /* sink: data messages counted */
    uint64_t bytes;          /* sink: payload bytes counted */
    int deflate;             /* permessage-deflate negotiated */
};

static int g_ep;
static struct block *g_blocks;
static volatile sig_atomic_t g_stop;

static void on_sig(int s)
{
    (void)s;
    g_stop = 1;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "bench_server: out of memory\n");
        exit(1);
    }
    return q;
}

/* Writes a server frame header (FIN set) for an n-byte payload; returns its length. */
static size_t frame_hdr(uint8_t *h, int opcode, int rsv1, uint64_t n)
{
    h[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (n < 126) {
        h[1] = (uint8_t)n;
        return 2;
    }
    if (n < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)(n >> (56 - 8 * i));
    return 10;
}

/* Compressible text of n bytes: JSON-like ticker lines with varying numbers. */
static void fill_text(uint8_t *p, size_t n)
{
    static const char *syms[] = {"BTC-USD", "ETH-USD", "SOL-USD", "ADA-EUR", "XRP-GBP"};
    uint32_t x = 12345;
    size_t off = 0;
    char line[128];
    while (off < n) {
        x = x * 1103515245u + 12345u;
        int k =
            snprintf(line, sizeof line, "{\"seq\":%u,\"sym\":\"%s\",\"px\":%u.%02u,\"qty\":%u}\n",
                     (unsigned)(off / 64), syms[(x >> 16) % 5], 100 + (x >> 8) % 90000,
                     (x >> 3) % 100, 1 + (x >> 20) % 500);
        size_t m = (size_t)k < n - off ? (size_t)k : n - off;
        memcpy(p + off, line, m);
        off += m;
    }
}

/* Raw deflate of a whole message with the 00 00 ff ff tail removed. */
static uint8_t *compress_msg(const uint8_t *p, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        exit(1);
    size_t cap = deflateBound(&z, n) + 16;
    uint8_t *o = xrealloc(NULL, cap);
    z.next_in = (uint8_t *)p;
    z.avail_in = (uInt)n;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_SYNC_FLUSH);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    if (len >= 4 && !memcmp(o + len - 4, "\0\0\xff\xff", 4)) len -= 4;
    *out_len = len;
    return o;
}

/* Returns the cached block for (size, deflate), building it on first use. */
static const struct block *get_block(uint32_t size, int deflate)
{
    for (struct block *b = g_blocks; b; b = b->next)
        if (b->size == size && b->deflate == deflate) return b;
    struct block *b = xrealloc(NULL, sizeof *b);
    b->size = size;
    b->deflate = deflate;
    uint8_t *msg = xrealloc(NULL, size ? size : 1);
    if (deflate)
        fill_text(msg, size);
    else
        for (uint32_t i = 0; i < size; i++)
            msg[i] = (uint8_t)(i % 251);
    const uint8_t *pl = msg;
    size_t pn = size;
    uint8_t *z = NULL;
    if (deflate) {
        z = compress_msg(msg, size, &pn);
        pl = z;
    }
    uint8_t hdr[10];
    size_t hl = frame_hdr(hdr, 2, deflate, pn);
    b->frame_len = hl + pn;
    size_t nframes = BLOCK_TARGET / b->frame_len;
    if (nframes == 0) nframes = 1;
    b->len = nframes * b->frame_len;
    b->data = xrealloc(NULL, b->len);
    for (size_t i = 0; i < nframes; i++) {
        memcpy(b->data + i * b->frame_len, hdr, hl);
        memcpy(b->data + i * b->frame_len + hl, pl, pn);
    }
    free(msg);
    free(z);
    b->next = g_blocks;
    g_blocks = b;
    return b;
}

static void set_out(struct conn *c, int on)
{
    if (c->want_out == on) return;
    c->want_out = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_free(struct conn *c)
{
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Appends to the output buffer. */
static void out_add(struct conn *c, const void *p, size_t n)
{
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t nc = c->out_cap ? c->out_cap : 65536;
            while (nc < c->out_len + n)
                nc *= 2;
            c->out = xrealloc(c->out, nc);
            c->out_cap = nc;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void out_frame(struct conn *c, int opcode, const void *p, size_t n)
{
    uint8_t h[10];
    size_t hl = frame_hdr(h, opcode, 0, n);
    out_add(c, h, hl);
    if (n) out_add(c, p, n);
}

/* Writes what is pending (output buffer, then blast frames). Returns -1 when
 * the connection is finished or broken (caller frees it). */
static int flush_out(struct conn *c)
{
    for (;;) {
        if (c->out_off < c->out_len) {
            ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN) {
                    set_out(c, 1);
                    return 0;
                }
                if (errno == EINTR) continue;
                return -1;
            }
            c->out_off += (size_t)w;
            continue;
        }
        if (c->closing) return -1;
        if (c->mode == M_BLAST && c->blk && c->left) {
            const struct block *b = c->blk;
            size_t end = b->len;
            uint64_t frames_left_in_pass = (b->len - c->blk_off) / b->frame_len;
            if (c->left != UINT64_MAX && c->left < frames_left_in_pass)
                end = c->blk_off + c->left * b->frame_len;
            ssize_t w = send(c->fd, b->data + c->blk_off, end - c->blk_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN) {
                    set_out(c, 1);
                    return 0;
                }
                if (errno == EINTR) continue;
                return -1;
            }
            size_t before = c->blk_off / b->frame_len;
            c->blk_off += (size_t)w;
            size_t after = c->blk_off / b->frame_len;
            if (c->left != UINT64_MAX) c->left -= after - before;
            if (c->blk_off == b->len) c->blk_off = 0;
            if (c->left == 0) {
                static const uint8_t cl[] = {0x88, 0x02, 0x03, 0xe8};
                out_add(c, cl, sizeof cl);
                c->closing = 1;
            }
            continue;
        }
        set_out(c, 0);
        return 0;
    }
}

static const char *query_param(const char *path, const char *name, char *buf, size_t cap)
{
    const char *q = strchr(path, '?');
    size_t nl = strlen(name);
    while (q) {
        q++;
        if (!strncmp(q, name, nl) && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t n = strcspn(v, "& ");
            if (n >= cap) n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return buf;
        }
        q = strchr(q, '&');
    }
    return NULL;
}

/* Finds a header value (case-insensitive name) in the request; copies it. */
static int header(const char *req, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(req, "\r\n"); l; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= cap) n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return 1;
        }
    }
    return 0;
}

/* Parses the upgrade request in c->in; returns -1 on error, 0 need more, 1 done. */
static int do_handshake(struct conn *c)
{
    if (c->in_len > 16384) return -1;
    void *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t hlen = (size_t)((uint8_t *)end - c->in) + 4;
    char req[16400];
    memcpy(req, c->in, hlen);
    req[hlen] = 0;
    char path[2048], key[128], ext[512], v[64];
    if (sscanf(req, "GET %2047s HTTP/1.1", path) != 1) return -1;
    if (!header(req, "Sec-WebSocket-Key", key, sizeof key)) return -1;
    int want_deflate = header(req, "Sec-WebSocket-Extensions", ext, sizeof ext) &&
                       strstr(ext, "permessage-deflate") != NULL;
    char acc_src[256];
    snprintf(acc_src, sizeof acc_src, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t sha[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)acc_src, strlen(acc_src), sha);
    char acc[64];
    EVP_EncodeBlock((uint8_t *)acc, sha, SHA_DIGEST_LENGTH);
    c->mode = M_SINK;
    /* Compression only where it costs us nothing per message: blasts of a
     * pre-compressed message, and sinks/idle connections (never inflated). */
    int dfl = query_param(path, "deflate", v, sizeof v) && v[0] == '1' && want_deflate;
    if (!strncmp(path, "/blast", 6)) {
        c->mode = M_BLAST;
        uint32_t size =
            query_param(path, "size", v, sizeof v) ? (uint32_t)strtoul(v, NULL, 10) : 16;
        uint64_t n = query_param(path, "n", v, sizeof v) ? strtoull(v, NULL, 10) : 0;
        c->deflate = dfl;
        c->blk = get_block(size, dfl);
        c->left = n ? n : UINT64_MAX;
    } else if (!strncmp(path, "/echo", 5)) {
        c->mode = M_ECHO;
    } else {
        c->deflate = dfl;
    }
    char resp[512];
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                      acc,
                      c->deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "server_no_context_takeover; client_no_context_takeover\r\n"
                                 : "");
    out_add(c, resp, (size_t)rl);
    memmove(c->in, c->in + hlen, c->in_len - hlen);
    c->in_len -= hlen;
    return 1;
}

/* Parses complete client frames in c->in (echo and sink). Returns -1 on a
 * protocol error. */
static int parse_frames(struct conn *c)
{
    size_t off = 0;
    while (c->in_len - off >= 2) {
        uint8_t *f = c->in + off;
        size_t avail = c->in_len - off;
        int op = f[0] & 0x0f, fin = f[0] >> 7;
        int masked = f[1] >> 7;
        uint64_t n = f[1] & 0x7f;
        size_t hl = 2;
        if (n == 126) {
            if (avail < 4) break;
            n = ((uint64_t)f[2] << 8) | f[3];
            hl = 4;
        } else if (n == 127) {
            if (avail < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | f[2 + i];
            hl = 10;
        }
        if (n > MAX_IN_FRAME) return -1;
        if (masked) hl += 4;
        if (avail < hl + n) {
            /* Make room for the whole frame. */
            if (hl + n > c->in_cap) {
                memmove(c->in, f, avail);
                c->in_len = avail;
                off = 0;
                c->in_cap = hl + n;
                c->in = xrealloc(c->in, c->in_cap);
                return 0;
            }
            break;
        }
        uint8_t *p = f + hl;
        if (c->mode == M_ECHO || op >= 8 || (op == 1 && n == 6)) {
            if (masked) {
                const uint8_t *k = f + hl - 4;
                size_t i = 0;
                uint32_t k32;
                memcpy(&k32, k, 4);
                uint64_t k64 = ((uint64_t)k32 << 32) | k32;
                for (; i + 8 <= n; i += 8) {
                    uint64_t x;
                    memcpy(&x, p + i, 8);
                    x ^= k64;
                    memcpy(p + i, &x, 8);
                }
                for (; i < n; i++)
                    p[i] ^= k[i & 3];
            }
        }
        if (op == 8) {
            out_frame(c, 8, p, n >= 2 ? 2 : 0);
            c->closing = 1;
            c->left = 0;
            c->in_len = 0;
            return 0;
        } else if (op == 9) {
            out_frame(c, 10, p, (size_t)n);
        } else if (op == 10) {
            /* pong: ignore */
        } else if (c->mode == M_ECHO) {
            uint8_t h[10];
            size_t l = frame_hdr(h, op, 0, n);
            if (!fin) h[0] &= 0x7f;
            out_add(c, h, l);
            out_add(c, p, (size_t)n);
        } else if (c->mode == M_SINK) {
            if (op == 1 && n == 6 && !memcmp(p, "REPORT", 6)) {
                char r[96];
                int k = snprintf(r, sizeof r, "count=%llu bytes=%llu", (unsigned long long)c->count,
                                 (unsigned long long)c->bytes);
                out_frame(c, 1, r, (size_t)k);
                c->count = c->bytes = 0;
            } else {
                c->bytes += n;
                c->count += (uint64_t)fin;
            }
        }
        off += hl + n;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

/* Readable: read everything there is, then act. Returns -1 to free. */
static int on_read(struct conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            size_t nc = c->in_cap < 262144 ? 262144 : c->in_cap * 2;
            if (c->mode == M_BLAST || c->mode == M_HTTP) nc = c->in_cap ? c->in_cap : 16384;
            if (nc > c->in_cap) {
                c->in = xrealloc(c->in, nc);
                c->in_cap = nc;
            }
        }
        size_t room = c->in_cap - c->in_len;
        if (room == 0) {
            if (c->mode == M_BLAST || c->mode == M_HTTP) return -1;
            break;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, room, 0);
        if (r == 0) return -1;
        if (r < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return -1;
        }
        c->in_len += (size_t)r;
        if (c->mode == M_HTTP) {
            int h = do_handshake(c);
            if (h < 0) return -1;
            if (h == 0) continue;
        }
        if (c->mode == M_BLAST) {
            /* Only a close frame matters; anything else is dropped. */
            if (c->in_len >= 2 && (c->in[0] & 0x0f) == 8) {
                static const uint8_t cl[] = {0x88, 0x02, 0x03, 0xe8};
                c->left = 0;
                c->out_off = c->out_len = 0;
                out_add(c, cl, sizeof cl);
                c->closing = 1;
                c->in_len = 0;
                break;
            }
            c->in_len = 0;
        } else if (parse_frames(c) < 0) {
            return -1;
        }
        if ((size_t)r < room) break;
    }
    return flush_out(c);
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_server [--port P]\n");
            return 64;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_sig};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4096) != 0) {
        perror("bench_server: bind/listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, ls, &lev);
    printf("LISTENING %d\n", ntohs(a.sin_port));
    fflush(stdout);
    struct epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_wait(g_ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int r = 0;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) r = on_read(c);
            if (r == 0 && (evs[i].events & EPOLLOUT)) r = flush_out(c);
            if (r < 0) conn_free(c);
        }
    }
    return 0;
}

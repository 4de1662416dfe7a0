/* Peer client of the end-to-end benchmarks: Debian's libwebsockets 4.1.6 as
 * a plain WebSocket client (what a broker built on its client role alone
 * could do) against tests/bench/bench_server.
 *
 * Layer: tests/bench; libwebsockets only, nothing of the broker. Same
 * command line and RESULT line as ref_client.c (modes recv, echo, pipe,
 * send; --deflate offers lws' own permessage-deflate). --rxbuf N sets the
 * protocol's rx_buffer_size and the per-thread service buffer (default
 * 65536, the tuned setting; 0 keeps lws' defaults) so run.sh can show the
 * effect of tuning. */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Benchmark state (one connection). */
struct bench {
    const char *mode;  /* recv | echo | pipe | send */
    size_t size;       /* message payload bytes */
    double secs;       /* measuring time */
    int depth;         /* messages in flight for pipe */
    int deflate;       /* offer permessage-deflate */
    uint8_t *buf;      /* LWS_PRE + size bytes of payload to send (owned) */
    double t0, t1;     /* start, end (monotonic seconds) */
    double ts;         /* send time of the message in flight (echo) */
    uint64_t msgs;     /* messages received (or counted by the sink) */
    uint64_t bytes;    /* payload bytes */
    uint64_t inflight; /* echo/pipe: sent, not yet back */
    uint64_t to_send;  /* echo/pipe: messages to write on the next writeable */
    size_t msg_len;    /* bytes of the message being received */
    int sending;       /* still starting new messages */
    int report_sent;   /* send: REPORT written */
    int done;          /* finished (or failed) */
    int failed;
    double *lat; /* echo latencies, us (owned) */
    size_t nlat, caplat;
};

static struct bench g;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_msg(struct lws *wsi)
{
    return lws_write(wsi, g.buf + LWS_PRE, g.size, LWS_WRITE_BINARY) < (int)g.size ? -1 : 0;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        g.t0 = g.ts = now();
        g.sending = 1;
        if (!strcmp(g.mode, "echo") || !strcmp(g.mode, "pipe")) {
            g.to_send = !strcmp(g.mode, "echo") ? 1 : (uint64_t)g.depth;
            lws_callback_on_writable(wsi);
        } else if (!strcmp(g.mode, "send")) {
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        g.msg_len += len;
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi)) break;
        size_t n = g.msg_len;
        g.msg_len = 0;
        if (!strcmp(g.mode, "send")) {
            char tmp[96];
            size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, in, k);
            tmp[k] = 0;
            unsigned long long c = 0, b = 0;
            sscanf(tmp, "count=%llu bytes=%llu", &c, &b);
            g.msgs = c;
            g.bytes = b;
            g.t1 = now();
            g.done = 1;
            return -1;
        }
        g.msgs++;
        g.bytes += n;
        if (!strcmp(g.mode, "recv")) {
            if ((g.msgs & 255) == 0 && now() - g.t0 >= g.secs) {
                g.t1 = now();
                g.done = 1;
                return -1;
            }
            break;
        }
        double t = now();
        if (!strcmp(g.mode, "echo")) {
            if (g.nlat == g.caplat) {
                g.caplat = g.caplat ? g.caplat * 2 : 65536;
                g.lat = realloc(g.lat, g.caplat * sizeof *g.lat);
            }
            g.lat[g.nlat++] = (t - g.ts) * 1e6;
        }
        g.inflight--;
        if (g.sending && t - g.t0 >= g.secs) g.sending = 0;
        if (g.sending) {
            g.to_send++;
            lws_callback_on_writable(wsi);
        } else if (!g.inflight) {
            g.t1 = t;
            g.done = 1;
            return -1;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!strcmp(g.mode, "send")) {
            if (g.report_sent) break;
            if (now() - g.t0 >= g.secs) {
                uint8_t rep[LWS_PRE + 8];
                memcpy(rep + LWS_PRE, "REPORT", 6);
                lws_write(wsi, rep + LWS_PRE, 6, LWS_WRITE_TEXT);
                g.report_sent = 1;
                break;
            }
            int k = 0;
            do {
                if (write_msg(wsi)) return -1;
            } while (++k < 256 && g.size < 65536 && !lws_send_pipe_choked(wsi));
            lws_callback_on_writable(wsi);
            break;
        }
        while (g.to_send) {
            g.ts = now();
            if (write_msg(wsi)) return -1;
            g.to_send--;
            g.inflight++;
            if (lws_send_pipe_choked(wsi)) {
                if (g.to_send) lws_callback_on_writable(wsi);
                break;
            }
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "lws_client: connection error: %s\n", in ? (char *)in : "?");
        g.failed = g.done = 1;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!g.done) {
            g.t1 = now();
            g.done = 1;
        }
        break;
    default:
        break;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int port = 0, rxbuf = 65536;
    g.mode = "recv";
    g.size = 16;
    g.secs = 1;
    g.depth = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--port"))
            port = atoi(v), i++;
        else if (!strcmp(a, "--mode"))
            g.mode = v, i++;
        else if (!strcmp(a, "--size"))
            g.size = strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--secs"))
            g.secs = atof(v), i++;
        else if (!strcmp(a, "--depth"))
            g.depth = atoi(v), i++;
        else if (!strcmp(a, "--rxbuf"))
            rxbuf = atoi(v), i++;
        else if (!strcmp(a, "--deflate"))
            g.deflate = 1;
        else {
            fprintf(stderr, "usage: lws_client --port P --mode M --size S [--secs D] [--depth K] "
                            "[--deflate] [--rxbuf N]\n");
            return 64;
        }
    }
    g.buf = malloc(LWS_PRE + g.size + 1);
    memset(g.buf, 'x', LWS_PRE + g.size + 1);
    lws_set_log_level(LLL_ERR, NULL);
    static struct lws_protocols protocols[] = {{"bench", cb, 0, 0, 0, NULL, 0}, {NULL}};
    protocols[0].rx_buffer_size = (size_t)rxbuf;
    static const struct lws_extension exts[] = {
        {"permessage-deflate", lws_extension_callback_pm_deflate,
         "permessage-deflate; client_no_context_takeover; server_no_context_takeover"},
        {NULL, NULL, NULL}};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    if (g.deflate) info.extensions = exts;
    if (rxbuf) info.pt_serv_buf_size = (unsigned)rxbuf;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) return 1;
    const char *route = !strcmp(g.mode, "recv")   ? "/blast"
                        : !strcmp(g.mode, "send") ? "/sink"
                                                  : "/echo";
    char path[128], host[64];
    snprintf(path, sizeof path, "%s?size=%zu%s", route, g.size, g.deflate ? "&deflate=1" : "");
    snprintf(host, sizeof host, "127.0.0.1:%d", port);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = path;
    ci.host = host;
    ci.origin = host;
    ci.protocol = NULL;
    if (!lws_client_connect_via_info(&ci)) return 1;
    double guard = now() + g.secs + 30;
    while (!g.done && now() < guard)
        lws_service(ctx, 0);
    lws_context_destroy(ctx);
    if (g.failed || !g.done) return 1;
    double p50 = 0, p99 = 0;
    if (g.nlat) {
        qsort(g.lat, g.nlat, sizeof *g.lat, cmp_d);
        p50 = g.lat[g.nlat / 2];
        p99 = g.lat[(size_t)((double)g.nlat * 0.99)];
    }
    printf("RESULT msgs=%llu bytes=%llu secs=%.6f p50_us=%.1f p99_us=%.1f\n",
           (unsigned long long)g.msgs, (unsigned long long)g.bytes, g.t1 - g.t0, p50, p99);
    return 0;
}

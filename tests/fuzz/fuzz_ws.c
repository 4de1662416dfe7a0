/* libFuzzer target: the broker's WebSocket client core (broker/ws.c,
 * ws_deflate.c, utf8.c) fed a server's bytes.
 *
 * Input: byte 0 = options, byte 1 = feed chunk size (0 = all at once), then
 * the server's bytes. Options: bits 0-1 compression mode (0 off, 1 context
 * takeover, 2 no context; 3 = the input is the raw handshake response too,
 * without the valid 101 we otherwise build from the request's key), bit 2 a
 * small read limit (1000 bytes), bit 3 pause in every second on_message,
 * bits 4-6 which Sec-WebSocket-Extensions answer the server gives, bit 7
 * send, ping and close from inside the run.
 * Checks besides "no crash": a delivered message is never larger than the
 * read limit; delivered text is valid UTF-8; on_close runs at most once and
 * nothing is delivered after it; ws_feed never consumes more than given.
 *
 * Layer: tests/fuzz. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/utf8.h"
#include "broker/ws.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_ws: property failed: %s\n", #c);                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct st {
    struct ws *ws;
    int opened, closed, pause, calls, send;
    uint64_t limit;
    uint64_t msg_len;    /* bytes of the message being delivered */
    int in_msg, text;    /* a message is in progress; it is text */
    struct ws_utf8 utf8; /* validator over the delivered text */
};

static void cb_open(void *ctx, const char *protocol, const char *extensions)
{
    struct st *s = ctx;
    CHECK(!s->opened && !s->closed);
    s->opened = 1;
}

static int cb_message(void *ctx, int opcode, const uint8_t *data, size_t len, int fin)
{
    struct st *s = ctx;
    CHECK(s->opened && !s->closed);
    CHECK(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY);
    if (!s->in_msg) {
        s->in_msg = 1;
        s->msg_len = 0;
        s->text = opcode == WS_OP_TEXT;
        ws_utf8_init(&s->utf8);
    }
    CHECK(len || fin);
    s->msg_len += len;
    CHECK(s->msg_len <= s->limit);
    if (s->text) {
        CHECK(ws_utf8_feed(&s->utf8, data, len, NULL) == 0);
        if (fin) CHECK(ws_utf8_done(&s->utf8));
    }
    if (fin) s->in_msg = 0;
    s->calls++;
    if (s->send && (s->calls & 3) == 1)
        ws_send(s->ws, s->calls & 4, (const uint8_t *)"reply payload", 13);
    return s->pause && (s->calls & 1);
}

static void cb_pong(void *ctx, const uint8_t *data, size_t len)
{
    struct st *s = ctx;
    CHECK(s->opened && !s->closed && len <= 125);
}

static void cb_close(void *ctx, int clean, int code, const char *reason, size_t reason_len,
                     int by_peer)
{
    struct st *s = ctx;
    CHECK(!s->closed);
    CHECK(reason_len <= 125);
    s->closed = 1;
}

static const char *const ext_answers[8] = {
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=9; client_no_context_takeover",
    NULL,
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
};

static void drain(struct st *s)
{
    size_t n;
    ws_out_peek(s->ws, &n);
    ws_out_consume(s->ws, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 1 << 20) return 0;
    uint8_t opt = data[0];
    size_t chunk = data[1] ? data[1] : size;
    data += 2;
    size -= 2;
    int mode = opt & 3;
    struct st s = {.pause = (opt >> 3) & 1, .send = opt >> 7};
    s.limit = opt & 4 ? 1000 : 1u << 20;
    const char *proto = "chat.v2";
    struct ws_opts o = {.host = "example.com",
                        .path = "/fuzz",
                        .protocols = &proto,
                        .n_protocols = (opt & 0x30) == 0x30,
                        .compression = mode == 3 ? 1 : mode,
                        .compression_threshold = 16,
                        .read_limit = s.limit,
                        .max_handshake = 4096};
    struct ws_callbacks cb = {.ctx = &s,
                              .on_open = cb_open,
                              .on_message = cb_message,
                              .on_pong = cb_pong,
                              .on_close = cb_close};
    s.ws = ws_new(&o, &cb);
    if (!s.ws) return 0;
    if (mode != 3) {
        /* A valid 101 for the request's key. */
        size_t n;
        const uint8_t *req = ws_out_peek(s.ws, &n);
        const char *k = memmem(req, n, "Sec-WebSocket-Key: ", 19);
        CHECK(k);
        char acc[29];
        CHECK(ws_accept_key(k + 19, 24, acc) == 0);
        char resp[600];
        const char *ext = mode ? ext_answers[(opt >> 4) & 7] : NULL;
        int rl =
            snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s\r\n",
                     acc, ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "",
                     ext ? "\r\n" : "", o.n_protocols ? "Sec-WebSocket-Protocol: chat.v2\r\n" : "");
        drain(&s);
        ssize_t r = ws_feed(s.ws, (const uint8_t *)resp, (size_t)rl);
        CHECK(r <= rl);
        if (!s.opened) {
            ws_free(s.ws);
            return 0;
        }
    }
    size_t pos = 0;
    int stalls = 0;
    while (pos < size && !s.closed && stalls < 64) {
        size_t k = size - pos < chunk ? size - pos : chunk;
        ssize_t r = ws_feed(s.ws, data + pos, k);
        if (r < 0) {
            CHECK(s.closed || !s.opened);
            break;
        }
        CHECK((size_t)r <= k);
        pos += (size_t)r;
        stalls = r == 0 ? stalls + 1 : 0;
        if (s.send && s.opened && ws_state(s.ws) == WS_OPEN && (pos & 7) == 3)
            ws_ping(s.ws, (const uint8_t *)"12345678", 8);
        drain(&s);
    }
    /* A paused inflate may hold output: zero-byte feeds drain it. */
    for (int i = 0; i < 64 && !s.closed && s.opened && ws_feed(s.ws, NULL, 0) >= 0; i++)
        drain(&s);
    if (s.send && ws_state(s.ws) == WS_OPEN) ws_close(s.ws, 1000, "bye", 3);
    drain(&s);
    ws_free(s.ws);
    return 0;
}

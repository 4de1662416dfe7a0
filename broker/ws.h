/* The broker's WebSocket client protocol core: RFC 6455 with RFC 7692
 * permessage-deflate, sans I/O.
 *
 * Layer: broker/. Depends on zlib (ws_deflate.c) and OpenSSL (RAND_bytes,
 * SHA-1) only; no sockets, no event loop, no libwebsockets, no Lua. The shell
 * (broker connection code) moves bytes: it passes what the socket delivered to
 * ws_feed, writes what ws_out_peek shows and calls ws_out_consume for what
 * was written. Events come back through struct ws_callbacks, only from
 * inside ws_feed; the sending functions never call back. A sending function
 * that fails returns a code and changes nothing; ws_feed's failures end the
 * connection and are reported through on_close before it returns.
 *
 * Life cycle: ws_new queues the HTTP upgrade request (state WS_CONNECTING).
 * ws_feed parses the response; on success on_open runs and the state is
 * WS_OPEN. The close handshake moves to WS_CLOSING (we sent a close and wait
 * for the peer's; the shell bounds that wait with a timer) and WS_CLOSED
 * (on_close has run; flush ws_out, then close the socket and ws_free).
 *
 * Callbacks may call ws_send_*, ws_ping, ws_close and the ws_out_* functions
 * but never ws_free or ws_feed on the same connection.
 *
 * Flow control: the core never limits its output buffer by itself (pongs and
 * close echoes must not be dropped). The shell keeps memory bounded by not
 * sending and not reading while ws_out_pending() is above its high-water mark.
 *
 * Randomness: masking keys come from a per-connection pool of 256 bytes filled
 * by OpenSSL RAND_bytes (a CSPRNG: CTR-DRBG with AES-256) and refilled when it
 * runs out, i.e. one RAND_bytes call per 64 frames; the handshake key is 16
 * fresh RAND_bytes. */
#ifndef WS_H
#define WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Error codes: 0 is success, these are negative. X(name, value, text). */
#define WS_ERRORS(X)                                                                               \
    X(WS_E_NOMEM, -1, "out of memory")                                                             \
    X(WS_E_INVAL, -2, "invalid argument")                                                          \
    X(WS_E_STATE, -3, "not allowed in the connection's current state")                             \
    X(WS_E_HANDSHAKE, -4, "WebSocket handshake failed")                                            \
    X(WS_E_PROTOCOL, -5, "WebSocket protocol violation by the peer (1002)")                        \
    X(WS_E_UTF8, -6, "invalid UTF-8 in a text message or close reason (1007)")                     \
    X(WS_E_TOO_BIG, -7, "message larger than the read limit (1009)")                               \
    X(WS_E_DEFLATE, -8, "compression or decompression failed")                                     \
    X(WS_E_RANDOM, -9, "random number generator failed")                                           \
    X(WS_E_LENGTH, -10, "more or less data than announced by ws_send_begin")                       \
    X(WS_E_CLOSED, -11, "connection is closed")

enum ws_error {
#define WS_X_ENUM(name, value, text) name = value,
    WS_ERRORS(WS_X_ENUM)
#undef WS_X_ENUM
};

/* Text for a code from WS_ERRORS (or "unknown error"); 0 gives "success". */
const char *ws_strerror(int err);

/* Connection states (ws_state). */
enum ws_conn_state {
    WS_CONNECTING = 0, /* request queued, waiting for the 101 response */
    WS_OPEN = 1,       /* handshake done, messages flow both ways */
    WS_CLOSING = 2,    /* we sent a close frame and wait for the peer's */
    WS_CLOSED = 3      /* on_close has run; only the output may still need flushing */
};

/* Opcodes that reach the shell. */
enum ws_opcode {
    WS_OP_CONT = 0,
    WS_OP_TEXT = 1,
    WS_OP_BINARY = 2,
    WS_OP_CLOSE = 8,
    WS_OP_PING = 9,
    WS_OP_PONG = 10
};

/* Compression modes (ws_opts.compression). */
enum ws_compression { WS_COMP_OFF = 0, WS_COMP_CONTEXT = 1, WS_COMP_NO_CONTEXT = 2 };

/* Options, read during ws_new only (strings are copied into the request). */
struct ws_opts {
    const char *host;               /* Host header value incl. :port when not default */
    const char *path;               /* request target, e.g. "/chat?x=1" */
    const char *const *hdr_names;   /* extra header names (validated by the caller) */
    const char *const *hdr_values;  /* extra header values, same count */
    size_t n_hdrs;                  /* number of extra headers */
    const char *const *protocols;   /* offered subprotocols (tokens) */
    size_t n_protocols;             /* number of offered subprotocols */
    int compression;                /* enum ws_compression */
    uint32_t compression_threshold; /* messages shorter than this (bytes) go out uncompressed */
    uint64_t read_limit;            /* max message size in bytes after inflating; == is accepted */
    size_t max_handshake;           /* max bytes of the response head; 0 means 16 KiB */
};

struct ws_callbacks {
    void *ctx; /* passed to every callback; not owned */
    /* Handshake done. protocol: the chosen subprotocol or ""; extensions: the
     * server's Sec-WebSocket-Extensions value or "" (deflate declined/off). */
    void (*on_open)(void *ctx, const char *protocol, const char *extensions);
    /* A chunk of a data message (opcode 1 text or 2 binary), already inflated
     * and, for text, UTF-8 checked so far; fin=1 on the last chunk. Chunks are
     * empty only when fin=1. data may point into the buffer given to ws_feed
     * and is valid during the call only. Return 0 to continue, 1 to pause:
     * ws_feed then returns early and the shell calls ws_feed again later with
     * the rest (possibly zero bytes: a paused inflate may still hold output). */
    int (*on_message)(void *ctx, int opcode, const uint8_t *data, size_t len, int fin);
    /* A pong arrived (payload <= 125 bytes). */
    void (*on_pong)(void *ctx, const uint8_t *data, size_t len);
    /* The connection is finished for the protocol: close handshake done
     * (clean=1; code and reason from the peer's close frame, 1005 if it had
     * none) or failed (clean=0; code = the failure's close code, which our
     * close frame carries unless we had already sent one, or 1006 when no
     * close frame could be sent, e.g. a failed handshake; reason = our
     * explanation, ASCII). by_peer=1 when the peer started the close
     * handshake.
     * Called exactly once; afterwards flush ws_out and close the socket. */
    void (*on_close)(void *ctx, int clean, int code, const char *reason, size_t reason_len,
                     int by_peer);
};

struct ws;

/* New connection in WS_CONNECTING with the upgrade request queued in the
 * output. NULL on OOM, RNG failure or bad options (missing host/path, CR/LF
 * in strings, bad subprotocol token, compression not 0..2). */
struct ws *ws_new(const struct ws_opts *o, const struct ws_callbacks *cb);
void ws_free(struct ws *w);

/* Feeds bytes from the socket. Returns the number of bytes consumed: n, or
 * fewer when on_message paused or the connection finished (a valid close
 * frame was read; later bytes are ignored). Negative WS_E_* after a fatal
 * error, once on_close has run (handshake failures: see ws_handshake_failed).
 * In WS_CLOSED it returns 0 and does nothing. */
ssize_t ws_feed(struct ws *w, const uint8_t *p, size_t n);

/* Direct payload reads (broker/conn.c reads large payloads straight into a
 * ring record instead of through ws_feed and on_message). While the core is
 * inside the payload of an uncompressed data frame, ws_rx_payload_left
 * returns how many payload bytes of that frame are still to come and sets
 * *op (WS_OP_TEXT or WS_OP_BINARY of the message) and *fin (the frame's FIN
 * bit); otherwise it returns 0. The caller then reads n of them (1 ..
 * that count) into its own memory and calls ws_rx_payload_done, which
 * checks them as ws_feed would (UTF-8 for text) and moves past them without
 * calling on_message: the caller delivers them. Returns 1 when they ended the
 * message, 0 when not, or a negative WS_E_* once the core failed the
 * connection (on_close ran, as for ws_feed). */
uint64_t ws_rx_payload_left(const struct ws *w, int *op, int *fin);
ssize_t ws_rx_payload_done(struct ws *w, const uint8_t *p, size_t n);

/* After a failure in the handshake phase: returns 1 and sets *http_status
 * (0 when no status line was parsed) and *why (static text); otherwise 0. */
int ws_handshake_failed(struct ws *w, int *http_status, const char **why);

/* Output waiting for the socket. */
size_t ws_out_pending(const struct ws *w);
/* The pending bytes as one contiguous chunk (NULL, *len=0 when none). */
const uint8_t *ws_out_peek(const struct ws *w, size_t *len);
/* Drops n bytes that were written. */
void ws_out_consume(struct ws *w, size_t n);

/* Sending, only in WS_OPEN. A message is announced with its total length and
 * given in one or more ws_send_data pieces. Uncompressed, each piece is one
 * frame (a message given whole is one frame). Compressed (deflate negotiated
 * and total >= compression_threshold), each piece is deflated and whatever
 * output it yields is a frame; RSV1 is set on the first. WS_E_STATE when a
 * message is already in progress or not open, WS_E_LENGTH when pieces exceed
 * the total. A message of total 0 is sent by ws_send_begin itself. These,
 * ws_ping and ws_close return WS_E_STATE before the handshake is done and
 * WS_E_CLOSED once we sent or received a close. The core does not validate
 * outgoing text: the shell checks UTF-8 before sending. */
int ws_send_begin(struct ws *w, int binary, uint64_t total);
int ws_send_data(struct ws *w, const uint8_t *p, size_t n);
/* Convenience: ws_send_begin + ws_send_data for a whole message. */
int ws_send(struct ws *w, int binary, const uint8_t *p, size_t n);
/* Sends a ping with n <= 125 bytes of payload. */
int ws_ping(struct ws *w, const uint8_t *p, size_t n);
/* Starts the close handshake (WS_OPEN -> WS_CLOSING). code 0 sends a close
 * without status; otherwise code must be valid on the wire (1000-1003,
 * 1007-1014, 3000-4999) and the reason (n <= 123) valid UTF-8. */
int ws_close(struct ws *w, int code, const char *reason, size_t n);
int ws_state(const struct ws *w);

/* 1 when a close frame may carry this status code (RFC 6455 7.4), else 0. */
int ws_close_code_valid(int code);

/* Writes base64(SHA-1(key + GUID)) (28 chars + NUL) to out; 0 or WS_E_*. */
int ws_accept_key(const char *key, size_t key_len, char out[29]);

/* Total bytes inflated on this connection so far (statistics, tests). */
uint64_t ws_inflated_total(const struct ws *w);

#endif

/* permessage-deflate (RFC 7692) for the WebSocket core: negotiation of the
 * extension parameters and the per-connection zlib streams.
 *
 * Layer: broker/. Depends on zlib and the WebSocket core's buffer type only;
 * no I/O, no OpenSSL, no libwebsockets.
 *
 * Window sizes: the inflater uses the negotiated server_max_window_bits but
 * at least 9, because zlib-based peers asked for 8 really use a 9-bit window
 * (zlib's deflate turns 8 into 9); a larger inflate window is always safe.
 * zlib cannot produce a raw deflate stream limited to an 8-bit window, so
 * when the server demands client_max_window_bits=8 we keep the extension for
 * receiving but send every message uncompressed (RSV1 clear), which RFC 7692
 * allows for any message. Our deflater uses zlib's default level (6) and
 * memLevel 8, created lazily on the first compressed message (about 256 KiB
 * with a 15-bit window; the inflater about 40 KiB). */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "broker/wsbuf.h"

/* Agreed parameters after the handshake. */
struct ws_pmd {
    int on;            /* 1 when the server accepted permessage-deflate */
    int server_no_ctx; /* server resets its compressor per message (we may reset inflate) */
    int client_no_ctx; /* we must reset our compressor per message */
    int server_bits;   /* server_max_window_bits, 8..15 (15 when not given) */
    int client_bits;   /* client_max_window_bits, 8..15 (15 when not given) */
};

/* The Sec-WebSocket-Extensions offer for a compression mode (1 or 2), or
 * NULL for 0. Mode 1: "permessage-deflate; client_max_window_bits". Mode 2:
 * "permessage-deflate; server_no_context_takeover; client_no_context_takeover". */
const char *ws_pmd_offer(int mode);

/* Checks the server's Sec-WebSocket-Extensions value (n bytes) against what
 * mode offered. Returns 0 and fills *out, or WS_E_HANDSHAKE with *why set: an
 * extension we did not offer, more than one, unknown or duplicate
 * parameters, values out of range (window bits 8..15, no leading zeros, no
 * value on the *_no_context_takeover flags), or client_max_window_bits when
 * mode 2 did not offer it. An empty value means declined (out->on = 0). */
int ws_pmd_negotiate(const char *v, size_t n, int mode, struct ws_pmd *out, const char **why);

struct ws_deflate;

/* Streams for agreed parameters p (p->on must be 1). NULL on OOM. */
struct ws_deflate *ws_deflate_new(const struct ws_pmd *p);
void ws_deflate_free(struct ws_deflate *d);

/* 0 when we must not compress at all (client_max_window_bits=8), else 1. */
int ws_deflate_can_send(const struct ws_deflate *d);

/* Inflates from in[0..n) into out[0..cap) (cap > 0), stopping when either is
 * exhausted; *used and *made report the progress. Returns 0, 1 when the
 * stream ended with a BFINAL block (the rest of this message's payload must
 * be ignored), WS_E_PROTOCOL on corrupt data or WS_E_NOMEM. After
 * 1 it keeps returning 1 without progress until ws_inflate_end_msg. */
int ws_inflate(struct ws_deflate *d, const uint8_t *in, size_t n, size_t *used, uint8_t *out,
               size_t cap, size_t *made);

/* 1 when all input given so far ends on a deflate block boundary (or the
 * stream ended with BFINAL). A message whose payload plus the 00 00 FF FF
 * tail does not end there is truncated or corrupt: RFC 7692 senders always
 * end a message with an empty stored block (whose last 4 bytes are removed)
 * or a BFINAL block. */
int ws_inflate_at_boundary(const struct ws_deflate *d);

/* Ends a message on the inflate side: resets the stream when the server
 * uses no context takeover, or restarts it with the old window as dictionary
 * after a BFINAL block. 0 or WS_E_NOMEM / WS_E_DEFLATE. */
int ws_inflate_end_msg(struct ws_deflate *d);

/* Deflates one piece of an outgoing message and appends the output to out.
 * final=1 on the last piece: the output is then sync-flushed, its trailing
 * 00 00 FF FF removed, and the stream reset when client_no_ctx. *made gets
 * the number of bytes appended (may be 0 for a non-final piece). 0 or
 * WS_E_NOMEM / WS_E_DEFLATE. */
int ws_deflate_piece(struct ws_deflate *d, const uint8_t *in, size_t n, int final,
                     struct ws_buf *out, size_t *made);

#endif

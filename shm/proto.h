/* The record protocol between the broker and a worker: the only contract
 * between broker/ and worker/ (and lua/), carried by the rings of shm/ring.h.
 *
 * Layer: shm/. Plain C, no Lua, no libwebsockets.
 *
 * Every value that both C and Lua see (record types, close codes, message
 * types, compression modes, error kinds) is defined here once as an X-macro
 * list; C enums and the Lua constant tables are generated from these lists.
 *
 * Direction and trust: records from a worker (W->B) are hostile input for the
 * broker; it copies each one out of the ring once and validates it (shape
 * here, state in the broker) before acting. Records from the broker (B->W) are
 * trusted by the worker.
 *
 * All multi-byte fields are host byte order (both sides run on one machine).
 * Payload structs are packed by construction (explicit sizes, no holes). */
#ifndef SHM_PROTO_H
#define SHM_PROTO_H

#include <stdint.h>

/* Record types. Values are stable; 0 is the ring's padding record.
 * X(name, value, direction, what) where direction is W2B or B2W. */
#define PROTO_RECORDS(X)                                                                           \
    X(READY, 1, W2B, "worker sandbox is up; payload: text describing the layers")                  \
    X(LOG, 2, W2B, "script output; flags: PROTO_F_STDERR; payload: text")                          \
    X(EXIT, 3, W2B, "script ended; payload: struct proto_exit + message text")                     \
    X(CONNECT, 4, W2B, "open a connection; conn: new id; payload: struct proto_connect + data")    \
    X(SEND, 5, W2B, "message chunk; flags: BEGIN/MORE/BINARY; BEGIN carries a u64 total length")   \
    X(PING, 6, W2B, "send a ping; payload: u64 token")                                             \
    X(CLOSE, 7, W2B, "start the close handshake; payload: struct proto_close + reason")            \
    X(CREDIT, 8, W2B, "script took messages from its channel; payload: u32 count")                 \
    X(SCRIPT, 32, B2W, "script to run; flags: MORE; payload: u32 name length, name, source")       \
    X(CONNECTED, 33, B2W, "handshake done; payload: struct proto_connected + strings")             \
    X(CONNECT_FAIL, 34, B2W, "connect failed; payload: struct proto_error + message")              \
    X(MSG, 35, B2W, "received message chunk; flags: MORE/BINARY; payload: data")                   \
    X(TX_CREDIT, 36, B2W, "bytes of SEND payload the broker has taken; payload: u64")              \
    X(PONG, 37, B2W, "pong for a PING; payload: u64 token")                                        \
    X(CLOSED, 38, B2W, "connection ended, after every MSG; payload: struct proto_closed + text")   \
    X(OP_ERROR, 39, B2W, "an operation on conn failed; payload: struct proto_error + message")     \
    X(SHUTDOWN, 40, B2W, "broker asks the worker to end; payload: u16 close code")

enum proto_rec_type {
#define PROTO_ENUM_(name, value, dir, what) PROTO_##name = value,
    PROTO_RECORDS(PROTO_ENUM_)
#undef PROTO_ENUM_
};

/* Highest record type value + 1, for the ring's type bound check. */
#define PROTO_TYPE_LIMIT 41

/* Record flags (struct shm_rec.flags). */
#define PROTO_F_MORE   0x0001u /* more chunk records of the same message follow */
#define PROTO_F_BINARY 0x0002u /* message is binary (else text) */
#define PROTO_F_BEGIN  0x0004u /* first chunk of a SEND (payload starts with u64 length) */
#define PROTO_F_STDERR 0x0008u /* LOG line goes to standard error */

/* Message types (numeric for send, strings for received messages). */
#define PROTO_MSG_TYPES(X)                                                                         \
    X(TEXT, 1, "text")                                                                             \
    X(BINARY, 2, "binary")                                                                         \
    X(PING, 9, "ping")                                                                             \
    X(PONG, 10, "pong")                                                                            \
    X(CLOSE, 8, "close")

/* Compression modes of the connect option `compression`. */
#define PROTO_COMPRESSION(X)                                                                       \
    X(DISABLED, 0)                                                                                 \
    X(CONTEXT_TAKEOVER, 1)                                                                         \
    X(NO_CONTEXT, 2)

/* Close codes known by name (websocket.CLOSE_CODES). */
#define PROTO_CLOSE_CODES(X)                                                                       \
    X(NORMAL, 1000)                                                                                \
    X(GOING_AWAY, 1001)                                                                            \
    X(PROTOCOL_ERROR, 1002)                                                                        \
    X(UNSUPPORTED_DATA, 1003)                                                                      \
    X(RESERVED, 1004)                                                                              \
    X(NO_STATUS, 1005)                                                                             \
    X(ABNORMAL_CLOSURE, 1006)                                                                      \
    X(INVALID_PAYLOAD, 1007)                                                                       \
    X(POLICY_VIOLATION, 1008)                                                                      \
    X(MESSAGE_TOO_BIG, 1009)                                                                       \
    X(MANDATORY_EXTENSION, 1010)                                                                   \
    X(INTERNAL_ERROR, 1011)                                                                        \
    X(SERVICE_RESTART, 1012)                                                                       \
    X(TRY_AGAIN_LATER, 1013)                                                                       \
    X(BAD_GATEWAY, 1014)                                                                           \
    X(TLS_HANDSHAKE, 1015)

/* Error kinds (errors.KIND = "String"); the index in this list is what
 * records carry (struct proto_error.kind). */
#define PROTO_ERROR_KINDS(X)                                                                       \
    X(UNKNOWN, "")                                                                                 \
    X(NOT_FOUND, "NotFound")                                                                       \
    X(ALREADY_EXISTS, "AlreadyExists")                                                             \
    X(INVALID, "Invalid")                                                                          \
    X(PERMISSION_DENIED, "PermissionDenied")                                                       \
    X(UNAVAILABLE, "Unavailable")                                                                  \
    X(INTERNAL, "Internal")                                                                        \
    X(CANCELED, "Canceled")                                                                        \
    X(CONFLICT, "Conflict")                                                                        \
    X(TIMEOUT, "Timeout")                                                                          \
    X(RATE_LIMITED, "RateLimited")

enum proto_err_kind {
#define PROTO_EK_(name, str) PROTO_EK_##name,
    PROTO_ERROR_KINDS(PROTO_EK_)
#undef PROTO_EK_
        PROTO_EK_COUNT
};

/* Stages at which a connect can fail (details().stage). */
#define PROTO_STAGES(X)                                                                            \
    X(NONE, "")                                                                                    \
    X(POLICY, "policy")                                                                            \
    X(OPTIONS, "options")                                                                          \
    X(DNS, "dns")                                                                                  \
    X(TCP, "tcp")                                                                                  \
    X(TLS, "tls")                                                                                  \
    X(HTTP, "http")                                                                                \
    X(TIMEOUT, "timeout")

enum proto_stage {
#define PROTO_ST_(name, str) PROTO_STAGE_##name,
    PROTO_STAGES(PROTO_ST_)
#undef PROTO_ST_
        PROTO_STAGE_COUNT
};

/* ---- Payload layouts ---- */

/* EXIT: how the script ended. status 0 = returned normally. */
struct proto_exit {
    int32_t status; /* 0 ok, 1 script error, 2 memory cap, 3 CPU budget */
    uint32_t reserved;
};
#define PROTO_EXIT_OK     0
#define PROTO_EXIT_ERROR  1
#define PROTO_EXIT_MEMORY 2
#define PROTO_EXIT_CPU    3

/* CONNECT: fixed part, then url_len bytes of URL, then n_headers times
 * (u16 name_len, name, u16 value_len, value), then n_protocols times
 * (u16 len, protocol). The broker validates every length against the record
 * length and every string's content (see broker/). Durations in ms, 0 = none. */
struct proto_connect {
    uint32_t dial_timeout_ms;
    uint32_t read_timeout_ms;
    uint32_t write_timeout_ms;
    uint32_t compression_threshold; /* bytes; 0 = default for the mode */
    uint32_t read_limit;            /* bytes; 0 = default (16 MiB) */
    uint32_t channel_capacity;      /* 1..10000 */
    uint8_t compression;            /* PROTO_COMPRESSION value */
    uint8_t reserved[3];
    uint16_t url_len;
    uint16_t n_headers;
    uint16_t n_protocols;
    uint16_t reserved2;
};

/* CONNECTED: fixed part, then protocol_len bytes of the negotiated
 * subprotocol, then extensions_len bytes of the negotiated extensions. */
struct proto_connected {
    uint32_t tx_window;      /* bytes of SEND payload the worker may have outstanding */
    uint16_t protocol_len;   /* negotiated subprotocol, may be 0 */
    uint16_t extensions_len; /* Sec-WebSocket-Extensions as accepted */
};

/* CONNECT_FAIL and OP_ERROR: fixed part, then msg_len bytes of message. */
struct proto_error {
    uint8_t kind;      /* enum proto_err_kind */
    uint8_t retryable; /* 0 no, 1 yes, 2 nil */
    uint8_t stage;     /* enum proto_stage (CONNECT_FAIL) */
    uint8_t op;        /* OP_ERROR: the failed record type */
    uint16_t http_status;
    uint16_t msg_len;
};

/* CLOSE (W2B): code then reason_len bytes of reason. */
struct proto_close {
    uint16_t code;
    uint16_t reason_len;
};

/* CLOSED (B2W): code 1005 when the peer's close had none, 1006 when the
 * connection dropped; then reason_len bytes of reason, then msg_len bytes of
 * an explanation for the script (may be 0). */
struct proto_closed {
    uint16_t code;
    uint8_t by;   /* PROTO_BY_* */
    uint8_t kind; /* enum proto_err_kind of the cause (0 for a clean close) */
    uint16_t reason_len;
    uint16_t msg_len;
};
#define PROTO_BY_CLIENT 0 /* the script called close() */
#define PROTO_BY_SERVER 1 /* the server sent a close frame first */
#define PROTO_BY_BROKER 2 /* the broker ended it (error, limit, shutdown, network) */

/* Limits both sides agree on. */
#define PROTO_MAX_MESSAGE          (128u * 1024u * 1024u) /* largest message either way */
#define PROTO_MAX_URL              8192u
#define PROTO_MAX_HEADERS          64u
#define PROTO_MAX_HEADER_BYTES     8192u /* one header name+value */
#define PROTO_MAX_PROTOCOLS        32u
#define PROTO_MAX_CHANNEL_CAPACITY 10000u
#define PROTO_MAX_REASON           123u

#endif

/* CUnit suite for lua/bridge.c and lua/websocket.c: a real shared-memory
 * link inside one process. The test thread plays the broker (it writes B2W
 * records and reads W2B records with the hostile-side shm_rx_read_copy); a
 * second thread runs a real runtime with the bridge executing a small Lua
 * script. Scripts check their side with assert(); the test checks the
 * records byte by byte and the EXIT status.
 *
 * Layer: tests. Uses shm/, lua/ and pthreads; no network. */
#include <CUnit/CUnit.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua/bridge.h"
#include "lua/rt.h"
#include "lua/websocket.h"
#include "shm/proto.h"
#include "shm/ring.h"

#define RING_BYTES (256u * 1024u)
#define WAIT_MS    5000

/* One test's link, worker thread and what the broker side saw. */
struct fx {
    struct shm_link brk; /* broker end (this thread) */
    struct shm_link wrk; /* worker end (worker thread) */
    pthread_t th;        /* the worker thread */
    const char *script;  /* Lua source the worker runs */
    uint8_t *buf;        /* payload of the last record read (rx max payload) */
    char log[65536];     /* stdout + stderr LOG text, NUL-terminated */
    size_t log_len;      /* bytes in log */
    int exit_status;     /* EXIT status, -1 until seen */
    char exit_msg[4096]; /* EXIT message */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *worker_main(void *arg)
{
    struct fx *f = arg;
    struct rt_config cfg = {0};
    struct rt *rt = rt_new(&cfg);
    if (!rt) return NULL;
    struct rt_bridge *b = rt_bridge_new(rt, &f->wrk);
    if (!b) {
        rt_free(rt);
        return NULL;
    }
    int st = rt_run(rt, "=test", f->script, strlen(f->script));
    rt_bridge_send_exit(b, st, st ? rt_last_error(rt) : NULL);
    rt_bridge_free(b);
    rt_free(rt);
    return NULL;
}

static int fx_start(struct fx *f, const char *script)
{
    memset(f, 0, sizeof *f);
    f->exit_status = -1;
    f->script = script;
    struct shm_worker_fds fds, wfds;
    if (shm_link_create_broker(&f->brk, RING_BYTES, &fds) != 0) return -1;
    /* attach closes the region fds and adopts the eventfds: give it copies */
    wfds.region_b = dup(fds.region_b);
    wfds.region_w = dup(fds.region_w);
    wfds.efd_worker = dup(fds.efd_worker);
    wfds.efd_broker = dup(fds.efd_broker);
    if (shm_link_attach_worker(&f->wrk, &wfds) != 0) return -1;
    f->buf = malloc(f->brk.rx.max_payload + 16);
    if (!f->buf) return -1;
    return pthread_create(&f->th, NULL, worker_main, f) == 0 ? 0 : -1;
}

/* Next record other than LOG (appended to f->log). Returns 1, 0 on timeout,
 * negative when the worker's ring is malformed. */
static int brk_next(struct fx *f, struct shm_rec *h, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int r = shm_rx_read_copy(&f->brk.rx, h, f->buf, f->brk.rx.max_payload);
        if (r < 0) return r;
        if (r == 1) {
            shm_rx_release(&f->brk.rx);
            if (h->type == PROTO_LOG) {
                size_t n = h->len;
                if (n > sizeof f->log - 1 - f->log_len) n = sizeof f->log - 1 - f->log_len;
                memcpy(f->log + f->log_len, f->buf, n);
                f->log_len += n;
                f->log[f->log_len] = '\0';
                continue;
            }
            if (h->type == PROTO_EXIT && h->len >= sizeof(struct proto_exit)) {
                struct proto_exit ex;
                memcpy(&ex, f->buf, sizeof ex);
                f->exit_status = ex.status;
                size_t n = h->len - sizeof ex;
                if (n > sizeof f->exit_msg - 1) n = sizeof f->exit_msg - 1;
                memcpy(f->exit_msg, f->buf + sizeof ex, n);
                f->exit_msg[n] = '\0';
            }
            return 1;
        }
        if (shm_rx_prepare_wait(&f->brk.rx) == 1) continue;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            shm_rx_end_wait(&f->brk.rx);
            return 0;
        }
        struct pollfd p = {.fd = f->brk.own_efd, .events = POLLIN};
        poll(&p, 1, (int)left);
        shm_efd_drain(f->brk.own_efd);
        shm_rx_end_wait(&f->brk.rx);
    }
}

/* Next record of a type other than CREDIT (credits are added to *credits
 * when non-NULL). */
static int brk_next_nc(struct fx *f, struct shm_rec *h, int timeout_ms, uint64_t *credits)
{
    for (;;) {
        int r = brk_next(f, h, timeout_ms);
        if (r != 1 || h->type != PROTO_CREDIT) return r;
        if (credits) {
            uint32_t n;
            memcpy(&n, f->buf, sizeof n);
            *credits += n;
        }
    }
}

/* Writes one B2W record, waiting for room while the worker drains. */
static int brk_send(struct fx *f, uint16_t type, uint16_t flags, uint32_t conn, const void *a,
                    uint32_t alen, const void *b, uint32_t blen)
{
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        void *dst;
        int r = shm_tx_reserve(&f->brk.tx, alen + blen, &dst);
        if (r == 0) {
            if (alen) memcpy(dst, a, alen);
            if (blen) memcpy((uint8_t *)dst + alen, b, blen);
            shm_tx_commit(&f->brk.tx, type, flags, conn);
            shm_tx_publish(&f->brk.tx);
            return 0;
        }
        if (r != SHM_EAGAIN) return r;
        shm_tx_publish(&f->brk.tx);
        if (shm_tx_prepare_wait(&f->brk.tx, 2 * (alen + blen + 64)) == 1) continue;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            shm_tx_end_wait(&f->brk.tx);
            return -1;
        }
        struct pollfd p = {.fd = f->brk.own_efd, .events = POLLIN};
        poll(&p, 1, (int)(left < 50 ? left : 50));
        shm_efd_drain(f->brk.own_efd);
        shm_tx_end_wait(&f->brk.tx);
    }
}

static void brk_connected(struct fx *f, uint32_t conn, uint32_t window, const char *proto,
                          const char *ext)
{
    struct proto_connected pc = {.tx_window = window,
                                 .protocol_len = (uint16_t)strlen(proto),
                                 .extensions_len = (uint16_t)strlen(ext)};
    char s[256];
    snprintf(s, sizeof s, "%s%s", proto, ext);
    CU_ASSERT_EQUAL(brk_send(f, PROTO_CONNECTED, 0, conn, &pc, sizeof pc, s, (uint32_t)strlen(s)),
                    0);
}

static void brk_closed(struct fx *f, uint32_t conn, uint16_t code, uint8_t by, const char *reason)
{
    struct proto_closed pc = {.code = code, .by = by, .reason_len = (uint16_t)strlen(reason)};
    CU_ASSERT_EQUAL(
        brk_send(f, PROTO_CLOSED, 0, conn, &pc, sizeof pc, reason, (uint32_t)strlen(reason)), 0);
}

/* Expects the next non-CREDIT record to be CONNECT for conn; answers it. */
static void brk_accept(struct fx *f, uint32_t conn, uint32_t window)
{
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CONNECT);
    CU_ASSERT_EQUAL(h.conn, conn);
    brk_connected(f, conn, window, "", "");
}

/* Waits for EXIT (sending SHUTDOWN if it does not come), joins the worker
 * and checks the status. Records seen meanwhile are counted by type. */
static void fx_finish(struct fx *f, int want_status, int counts[PROTO_TYPE_LIMIT])
{
    struct shm_rec h;
    int shut = 0;
    while (f->exit_status < 0) {
        int r = brk_next(f, &h, WAIT_MS);
        if (r < 0) break;
        if (r == 0) {
            if (shut) break;
            uint16_t code = 1001;
            brk_send(f, PROTO_SHUTDOWN, 0, 0, &code, sizeof code, NULL, 0);
            shut = 1;
            continue;
        }
        if (counts && h.type < PROTO_TYPE_LIMIT) counts[h.type]++;
    }
    CU_ASSERT_FALSE(shut);
    pthread_join(f->th, NULL);
    if (f->exit_status != want_status)
        fprintf(stderr, "\nexit %d (want %d): %s\nlog:\n%s\n", f->exit_status, want_status,
                f->exit_msg, f->log);
    CU_ASSERT_EQUAL(f->exit_status, want_status);
    free(f->buf);
    shm_link_destroy(&f->wrk);
    shm_link_destroy(&f->brk);
}

static void put16(uint8_t **w, const char *s)
{
    uint16_t n = (uint16_t)strlen(s);
    memcpy(*w, &n, 2);
    memcpy(*w + 2, s, n);
    *w += 2 + n;
}

/* ---- tests ---- */

static void test_connect_record(void)
{
    struct fx f;
    const char *script =
        "local c, err = websocket.connect('ws://u:p@h.example:81/p?q=1', {\n"
        "  headers = {['X-A'] = 'v1'}, protocols = {'chat', 'b'}, dial_timeout = '1500us',\n"
        "  read_timeout = 2000, write_timeout = 0.5,\n"
        "  compression = websocket.COMPRESSION.NO_CONTEXT, compression_threshold = 100,\n"
        "  read_limit = 1000, channel_capacity = 8})\n"
        "assert(c, err and err:message())\n"
        "local i = c:info()\n"
        "assert(i.state == 'open' and i.protocol == 'chat', i.protocol)\n"
        "assert(i.extensions == 'permessage-deflate', i.extensions)\n"
        "assert(i.url == 'ws://u:p@h.example:81/p?q=1')\n"
        "local c2 = assert(websocket.connect('ws://h/2'))\n"
        "print('connected')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CONNECT);
    CU_ASSERT_EQUAL(h.conn, 1);
    CU_ASSERT_EQUAL(h.flags, 0);
    const char *url = "ws://u:p@h.example:81/p?q=1";
    uint8_t want[512], *w = want;
    struct proto_connect pc = {.dial_timeout_ms = 2,
                               .read_timeout_ms = 2000,
                               .write_timeout_ms = 1,
                               .compression_threshold = 100,
                               .read_limit = 1000,
                               .channel_capacity = 8,
                               .compression = 2,
                               .url_len = (uint16_t)strlen(url),
                               .n_headers = 1,
                               .n_protocols = 2};
    memcpy(w, &pc, sizeof pc);
    w += sizeof pc;
    memcpy(w, url, strlen(url));
    w += strlen(url);
    put16(&w, "X-A");
    put16(&w, "v1");
    put16(&w, "chat");
    put16(&w, "b");
    CU_ASSERT_EQUAL(h.len, (uint32_t)(w - want));
    if (h.len == (uint32_t)(w - want))
        for (size_t i = 0; i < h.len; i++)
            if (f.buf[i] != want[i]) {
                fprintf(stderr, "\nCONNECT byte %zu: %02x want %02x\n", i, f.buf[i], want[i]);
                CU_FAIL("CONNECT payload differs");
                break;
            }
    brk_connected(&f, 1, 65536, "chat", "permessage-deflate");

    /* second connect: next id, defaults */
    CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CONNECT);
    CU_ASSERT_EQUAL(h.conn, 2);
    struct proto_connect d;
    memcpy(&d, f.buf, sizeof d);
    CU_ASSERT_EQUAL(d.dial_timeout_ms, 30000);
    CU_ASSERT_EQUAL(d.read_timeout_ms, 0);
    CU_ASSERT_EQUAL(d.write_timeout_ms, 0);
    CU_ASSERT_EQUAL(d.compression_threshold, 0);
    CU_ASSERT_EQUAL(d.read_limit, 0);
    CU_ASSERT_EQUAL(d.channel_capacity, 32);
    CU_ASSERT_EQUAL(d.compression, 0);
    CU_ASSERT_EQUAL(d.url_len, 8);
    CU_ASSERT_EQUAL(d.n_headers, 0);
    CU_ASSERT_EQUAL(d.n_protocols, 0);
    CU_ASSERT_EQUAL(h.len, sizeof d + 8);
    brk_connected(&f, 2, 65536, "", "");

    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, 0, counts);
    CU_ASSERT_EQUAL(counts[PROTO_CLOSE], 2); /* both closed with 1001 at the end */
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "connected\n"));
}

static void test_connect_fail(void)
{
    struct fx f;
    const char *script =
        "local c, err = websocket.connect('ws://user:pw@h.example:81/x?tok=secret#frag')\n"
        "assert(c == nil and err)\n"
        "assert(err:kind() == errors.INTERNAL, err:kind())\n"
        "assert(err:retryable() == true)\n"
        "assert(err:message() == 'connect: connection refused', err:message())\n"
        "local d = err:details()\n"
        "assert(d.url == 'ws://h.example:81/x', d.url)\n"
        "assert(d.stage == 'tcp' and d.status == nil)\n"
        "c, err = websocket.connect('ws://h/denied')\n"
        "assert(err:kind() == errors.PERMISSION_DENIED and err:retryable() == false)\n"
        "assert(err:details().stage == 'policy')\n"
        "c, err = websocket.connect('ws://h/404')\n"
        "assert(err:details().status == 404 and err:details().stage == 'http')\n"
        "assert(err:retryable() == nil)\n"
        "print('failed ok')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    struct shm_rec h;
    static const struct {
        uint8_t kind, retry, stage;
        uint16_t status;
        const char *msg;
    } fails[] = {
        {PROTO_EK_INTERNAL, 1, PROTO_STAGE_TCP, 0, "connect: connection refused"},
        {PROTO_EK_PERMISSION_DENIED, 0, PROTO_STAGE_POLICY, 0, "denied"},
        {PROTO_EK_INTERNAL, 2, PROTO_STAGE_HTTP, 404, "HTTP 404"},
    };
    for (uint32_t i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
        CU_ASSERT_EQUAL(h.type, PROTO_CONNECT);
        CU_ASSERT_EQUAL(h.conn, i + 1);
        struct proto_error pe = {.kind = fails[i].kind,
                                 .retryable = fails[i].retry,
                                 .stage = fails[i].stage,
                                 .op = PROTO_CONNECT,
                                 .http_status = fails[i].status,
                                 .msg_len = (uint16_t)strlen(fails[i].msg)};
        CU_ASSERT_EQUAL(
            brk_send(&f, PROTO_CONNECT_FAIL, 0, h.conn, &pe, sizeof pe, fails[i].msg, pe.msg_len),
            0);
    }
    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, 0, counts);
    CU_ASSERT_EQUAL(counts[PROTO_CLOSE], 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "failed ok"));
}

static void test_options_invalid(void)
{
    struct fx f;
    const char *script =
        "local bad = {\n"
        " {'headers', {headers = {Host = 'x'}}},\n"
        " {'headers', {headers = {['sec-WebSocket-Protocol'] = 'x'}}},\n"
        " {'headers', {headers = {Connection = 'x'}}},\n"
        " {'headers', {headers = {upgrade = 'x'}}},\n"
        " {'headers', {headers = {['X-A'] = 'a\\r\\nB: c'}}},\n"
        " {'headers', {headers = {['X-A'] = 'a\\0'}}},\n"
        " {'headers', {headers = {['X A'] = 'v'}}},\n"
        " {'headers', {headers = {['X-A'] = 1}}},\n"
        " {'headers', {headers = {'v'}}},\n"
        " {'headers', {headers = 'X-A: v'}},\n"
        " {'protocols', {protocols = {'a', 'a'}}},\n"
        " {'protocols', {protocols = {'a b'}}},\n"
        " {'protocols', {protocols = {''}}},\n"
        " {'protocols', {protocols = {x = 'a'}}},\n"
        " {'protocols', {protocols = 'a'}},\n"
        " {'dial_timeout', {dial_timeout = 'soon'}},\n"
        " {'dial_timeout', {dial_timeout = -1}},\n"
        " {'read_timeout', {read_timeout = {}}},\n"
        " {'write_timeout', {write_timeout = true}},\n"
        " {'compression', {compression = 3}},\n"
        " {'compression', {compression = '1'}},\n"
        " {'compression', {compression = 1.5}},\n"
        " {'compression_threshold', {compression_threshold = 100 * 1024 * 1024 + 1}},\n"
        " {'compression_threshold', {compression_threshold = -1}},\n"
        " {'read_limit', {read_limit = 128 * 1024 * 1024 + 1}},\n"
        " {'read_limit', {read_limit = 0.5}},\n"
        " {'channel_capacity', {channel_capacity = 0}},\n"
        " {'channel_capacity', {channel_capacity = 10001}},\n"
        " {'channel_capacity', {channel_capacity = '5'}},\n"
        " {'bogus_option', {bogus_option = 1}},\n"
        "}\n"
        "for i, case in ipairs(bad) do\n"
        "  local c, err = websocket.connect('ws://h/', case[2])\n"
        "  assert(c == nil, 'case ' .. i .. ' accepted')\n"
        "  assert(err:kind() == errors.INVALID, 'case ' .. i .. ': ' .. err:kind())\n"
        "  assert(err:retryable() == false)\n"
        "  assert(err:message():find(case[1], 1, true), 'case ' .. i .. ': ' .. err:message())\n"
        "  assert(err:details().option == case[1])\n"
        "end\n"
        "local c, err = websocket.connect('ws://h/' .. string.rep('a', 8200))\n"
        "assert(c == nil and err:kind() == errors.INVALID)\n"
        "assert(not pcall(websocket.connect))\n"
        "assert(not pcall(websocket.connect, 5))\n"
        "assert(not pcall(websocket.connect, 'ws://h/', 'x'))\n"
        "assert(not pcall(websocket.connect, 'ws://h/', 5))\n"
        "assert(not pcall(function() websocket.TEXT = 3 end))\n"
        "assert(not pcall(function() websocket.CLOSE_CODES.NORMAL = 3 end))\n"
        "assert(websocket.CLOSE_CODES.TLS_HANDSHAKE == 1015 and websocket.CLOSE_CODES.RESERVED "
        "== 1004)\n"
        "assert(websocket.COMPRESSION.NO_CONTEXT == 2 and websocket.TYPE_CLOSE == 'close')\n"
        "local n = 0 for k in pairs(websocket.CLOSE_CODES) do n = n + 1 end\n"
        "assert(n == 16, n)\n"
        "print('all refused')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, 0, counts);
    CU_ASSERT_EQUAL(counts[PROTO_CONNECT], 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "all refused"));
}

static void test_no_context(void)
{
    struct rt_config cfg = {0};
    struct rt *rt = rt_new(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    rt_add_module(rt, "websocket", rt_open_websocket);
    const char *s = "local c, e = websocket.connect('ws://h/')\n"
                    "assert(c == nil and e:kind() == errors.INTERNAL)\n"
                    "assert(e:retryable() == false and e:message() == 'no context')\n"
                    "assert(websocket.BINARY == 2)\n";
    int st = rt_run(rt, "=nocontext", s, strlen(s));
    if (st) fprintf(stderr, "\n%s\n", rt_last_error(rt));
    CU_ASSERT_EQUAL(st, RT_OK);
    rt_free(rt);
}

static void test_message_assembly(void)
{
    struct fx f;
    const char *script =
        "local c = assert(websocket.connect('ws://h/', {channel_capacity = 4}))\n"
        "local ch = c:channel()\n"
        "assert(ch == c:receive())\n"
        "local m = assert(ch:receive())\n"
        "assert(m.type == 'text' and m.data == 'first')\n"
        "m = assert(ch:receive())\n"
        "local N = 3 * 1024 * 1024\n"
        "assert(m.type == 'binary' and #m.data == N, #m.data)\n"
        "local t = {} for i = 0, 250 do t[#t + 1] = string.char(i) end\n"
        "local exp = string.rep(table.concat(t), N // 251 + 1):sub(1, N)\n"
        "assert(m.data == exp, 'content differs')\n"
        "m = assert(ch:receive())\n"
        "assert(m.type == 'text' and m.data == 'last')\n"
        "local v, ok = ch:receive()\n"
        "assert(v == nil and ok == false)\n"
        "local i = c:info()\n"
        "assert(i.state == 'closed' and i.close_code == 4001 and i.closed_by == 'server')\n"
        "assert(i.close_reason == 'bye')\n"
        "local sok, e = c:send('x')\n"
        "assert(sok == false and e:kind() == errors.INTERNAL and e:retryable() == false)\n"
        "assert(e:message():find('closed'), e:message())\n"
        "assert(c:close() == true)\n"
        "print('assembled')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    CU_ASSERT_EQUAL(brk_send(&f, PROTO_MSG, 0, 1, "first", 5, NULL, 0), 0);
    size_t n = 3u << 20;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i % 251);
    uint32_t max = shm_tx_max_payload(&f.brk.tx);
    for (size_t off = 0; off < n;) {
        /* uneven chunk sizes, including tiny ones */
        uint32_t k = (uint32_t)(off == 0 ? 1 : off < 100 ? 7 : max);
        if (k > n - off) k = (uint32_t)(n - off);
        uint16_t fl = PROTO_F_BINARY | (off + k < n ? PROTO_F_MORE : 0);
        CU_ASSERT_EQUAL_FATAL(brk_send(&f, PROTO_MSG, fl, 1, big + off, k, NULL, 0), 0);
        off += k;
    }
    free(big);
    CU_ASSERT_EQUAL(brk_send(&f, PROTO_MSG, 0, 1, "last", 4, NULL, 0), 0);
    brk_closed(&f, 1, 4001, PROTO_BY_SERVER, "bye");
    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, 0, counts);
    CU_ASSERT_EQUAL(counts[PROTO_CLOSE], 0); /* it had ended: close() sends nothing */
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "assembled"));
}

static void test_credits(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/', {channel_capacity = 8}))\n"
                         "local ch = c:channel()\n"
                         "for i = 1, 3 do assert(ch:receive().data == 'm' .. i) end\n"
                         "for i = 4, 11 do assert(ch:receive().data == 'm' .. i) end\n"
                         "local v, ok = ch:receive()\n"
                         "assert(ok == false)\n"
                         "print('credits')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    char m[16];
    for (int i = 1; i <= 3; i++) {
        int k = snprintf(m, sizeof m, "m%d", i);
        brk_send(&f, PROTO_MSG, 0, 1, m, (uint32_t)k, NULL, 0);
    }
    /* three taken, then the script sleeps: 2 by the hook (batch 8/4), 1 at
     * the flush before sleeping */
    uint64_t credits = 0;
    struct shm_rec h;
    int64_t deadline = now_ms() + WAIT_MS;
    while (credits < 3 && now_ms() < deadline) {
        if (brk_next(&f, &h, 200) == 1) {
            CU_ASSERT_EQUAL(h.type, PROTO_CREDIT);
            CU_ASSERT_EQUAL(h.conn, 1);
            CU_ASSERT_EQUAL(h.len, 4);
            uint32_t k;
            memcpy(&k, f.buf, 4);
            CU_ASSERT(k >= 1 && k <= 2);
            credits += k;
        }
    }
    CU_ASSERT_EQUAL(credits, 3);
    /* a full channel's worth (8) */
    for (int i = 4; i <= 11; i++) {
        int k = snprintf(m, sizeof m, "m%d", i);
        brk_send(&f, PROTO_MSG, 0, 1, m, (uint32_t)k, NULL, 0);
    }
    deadline = now_ms() + WAIT_MS;
    while (credits < 11 && now_ms() < deadline)
        if (brk_next_nc(&f, &h, 200, &credits) == 1) CU_FAIL("unexpected record");
    CU_ASSERT_EQUAL(credits, 11);
    brk_closed(&f, 1, 1000, PROTO_BY_SERVER, "");
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "credits"));
}

static void test_send_chunks_window(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/'))\n"
                         "local ok, e = c:send('\\xff')\n"
                         "assert(ok == false and e:kind() == errors.INVALID)\n"
                         "assert(not pcall(c.send, c, 'x', 3))\n"
                         "assert(not pcall(c.send, c, 5))\n"
                         "assert(c:send(string.rep('a', 1000)) == true)\n"
                         "local N = 300000\n"
                         "local t = {} for i = 0, 250 do t[#t + 1] = string.char(i) end\n"
                         "local big = string.rep(table.concat(t), N // 251 + 1):sub(1, N)\n"
                         "assert(c:send(big, websocket.BINARY) == true)\n"
                         "assert(c:send('', websocket.TEXT) == true)\n"
                         "print('sent')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    const uint64_t window = 100000;
    brk_accept(&f, 1, (uint32_t)window);
    struct shm_rec h;
    uint64_t outstanding = 0;
    /* message 1: one record */
    CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_SEND);
    CU_ASSERT_EQUAL(h.flags, PROTO_F_BEGIN);
    CU_ASSERT_EQUAL(h.len, 8 + 1000);
    uint64_t total;
    memcpy(&total, f.buf, 8);
    CU_ASSERT_EQUAL(total, 1000);
    outstanding += 1000;
    /* message 2: chunks, window respected */
    size_t got = 0, N = 300000;
    int first = 1, stalls = 0, idle = 0;
    uint32_t max = f.brk.rx.max_payload;
    while (got < N) {
        int r = brk_next(&f, &h, 150);
        CU_ASSERT_FATAL(r >= 0);
        if (r == 0) {
            /* the worker waits for credit only when the window is used up
             * (a slow worker may just not have written yet) */
            CU_ASSERT_FATAL(++idle < 40);
            if (outstanding < window) continue;
            stalls++;
            brk_send(&f, PROTO_TX_CREDIT, 0, 1, &outstanding, 8, NULL, 0);
            outstanding = 0;
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(h.type, PROTO_SEND);
        CU_ASSERT(h.flags & PROTO_F_BINARY);
        CU_ASSERT(h.len <= max);
        const uint8_t *d = f.buf;
        uint32_t dl = h.len;
        if (first) {
            CU_ASSERT(h.flags & PROTO_F_BEGIN);
            memcpy(&total, f.buf, 8);
            CU_ASSERT_EQUAL(total, N);
            d += 8;
            dl -= 8;
            first = 0;
        } else {
            CU_ASSERT_FALSE(h.flags & PROTO_F_BEGIN);
        }
        for (uint32_t i = 0; i < dl; i++)
            if (d[i] != (uint8_t)((got + i) % 251)) {
                CU_FAIL("SEND data differs");
                break;
            }
        got += dl;
        outstanding += dl;
        CU_ASSERT(outstanding <= window);
        CU_ASSERT_EQUAL(!!(h.flags & PROTO_F_MORE), got < N);
    }
    CU_ASSERT_EQUAL(got, N);
    CU_ASSERT(stalls >= 2);
    /* the empty message needs no window */
    CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_SEND);
    CU_ASSERT_EQUAL(h.flags, PROTO_F_BEGIN);
    CU_ASSERT_EQUAL(h.len, 8);
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "sent"));
}

static void test_close_codes(void)
{
    struct fx f;
    const char *script =
        "local c = assert(websocket.connect('ws://h/'))\n"
        "for _, code in ipairs{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000} do\n"
        "  assert(not pcall(c.close, c, code), code)\n"
        "end\n"
        "assert(not pcall(c.close, c, 1000, string.rep('r', 124)))\n"
        "assert(not pcall(c.close, c, 1000, '\\xc0\\x80'))\n"
        "assert(c:info().state == 'open')\n"
        "assert(c:close(4000, 'bye') == true)\n"
        "local i = c:info()\n"
        "assert(i.state == 'closed' and i.close_code == 4000 and i.closed_by == 'client')\n"
        "local ok, e = c:close()\n"
        "assert(ok == false and e:kind() == errors.INTERNAL and e:retryable() == false)\n"
        "ok, e = c:send('x')\n"
        "assert(ok == false and e:kind() == errors.INTERNAL)\n"
        "ok, e = c:ping()\n"
        "assert(ok == false and e:kind() == errors.INTERNAL)\n"
        "local c2 = assert(websocket.connect('ws://h/'))\n"
        "assert(c2:close() == true)\n"
        "print('closed')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CLOSE);
    CU_ASSERT_EQUAL(h.conn, 1);
    struct proto_close pc;
    memcpy(&pc, f.buf, sizeof pc);
    CU_ASSERT_EQUAL(pc.code, 4000);
    CU_ASSERT_EQUAL(pc.reason_len, 3);
    CU_ASSERT_EQUAL(h.len, sizeof pc + 3);
    CU_ASSERT_EQUAL(memcmp(f.buf + sizeof pc, "bye", 3), 0);
    brk_closed(&f, 1, 4000, PROTO_BY_CLIENT, "bye");
    brk_accept(&f, 2, 65536);
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CLOSE);
    memcpy(&pc, f.buf, sizeof pc);
    CU_ASSERT_EQUAL(pc.code, 1000);
    CU_ASSERT_EQUAL(pc.reason_len, 0);
    brk_closed(&f, 2, 1000, PROTO_BY_CLIENT, "");
    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, 0, counts);
    CU_ASSERT_EQUAL(counts[PROTO_CLOSE], 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "closed"));
}

static void test_ping(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/', {read_timeout = 100}))\n"
                         "assert(c:ping() == true)\n"
                         "local ok, e = c:ping()\n"
                         "assert(ok == false and e:kind() == errors.TIMEOUT, tostring(e))\n"
                         "ok, e = c:ping()\n"
                         "assert(ok == false and e:kind() == errors.INTERNAL)\n"
                         "print('pinged')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_PING);
    CU_ASSERT_EQUAL(h.len, 8);
    uint64_t tok, other = 999999;
    memcpy(&tok, f.buf, 8);
    brk_send(&f, PROTO_PONG, 0, 1, &other, 8, NULL, 0); /* not ours: ignored */
    brk_send(&f, PROTO_PONG, 0, 1, &tok, 8, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_PING); /* left unanswered: times out */
    /* the third ping fails because the connection ends meanwhile */
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_PING);
    brk_closed(&f, 1, 1006, PROTO_BY_BROKER, "");
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "pinged"));
}

static void test_write_timeout(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/', {write_timeout = 50}))\n"
                         "local ok, e = c:send(string.rep('x', 100))\n"
                         "assert(ok == false and e:kind() == errors.TIMEOUT, tostring(e))\n"
                         "assert(c:info().state ~= 'open')\n"
                         "ok, e = c:send('y')\n"
                         "assert(ok == false and e:kind() == errors.INTERNAL)\n"
                         "assert(c:close() == true)\n"
                         "print('timed out')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 10);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_SEND);
    CU_ASSERT_EQUAL(h.flags, PROTO_F_BEGIN | PROTO_F_MORE);
    CU_ASSERT_EQUAL(h.len, 8 + 10);
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CLOSE);
    struct proto_close pc;
    memcpy(&pc, f.buf, sizeof pc);
    CU_ASSERT_EQUAL(pc.code, 1001);
    brk_closed(&f, 1, 1001, PROTO_BY_CLIENT, "write timeout");
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "timed out"));
}

static void test_gc_and_shutdown(void)
{
    struct fx f;
    const char *script = "do local c = assert(websocket.connect('ws://h/')) end\n"
                         "collectgarbage('collect')\n"
                         "collectgarbage('collect')\n"
                         "local c2 = assert(websocket.connect('ws://h/'))\n"
                         "print('waiting')\n"
                         "c2:channel():receive()\n"
                         "error('not reached')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, NULL), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CLOSE);
    CU_ASSERT_EQUAL(h.conn, 1);
    struct proto_close pc;
    memcpy(&pc, f.buf, sizeof pc);
    CU_ASSERT_EQUAL(pc.code, 1001);
    brk_accept(&f, 2, 65536);
    usleep(50000);
    uint16_t code = 1001;
    brk_send(&f, PROTO_SHUTDOWN, 0, 0, &code, 2, NULL, 0);
    int counts[PROTO_TYPE_LIMIT] = {0};
    fx_finish(&f, RT_ERROR, counts);
    CU_ASSERT_PTR_NULL(strstr(f.exit_msg, "not reached"));
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "waiting"));
}

static void test_print_and_script(void)
{
    /* wait_script and LOG chunking, without running through rt_run */
    struct shm_link brk, wrk;
    struct shm_worker_fds fds, wfds;
    CU_ASSERT_EQUAL_FATAL(shm_link_create_broker(&brk, RING_BYTES, &fds), 0);
    wfds.region_b = dup(fds.region_b);
    wfds.region_w = dup(fds.region_w);
    wfds.efd_worker = dup(fds.efd_worker);
    wfds.efd_broker = dup(fds.efd_broker);
    CU_ASSERT_EQUAL_FATAL(shm_link_attach_worker(&wrk, &wfds), 0);
    struct rt_config cfg = {0};
    struct rt *rt = rt_new(&cfg);
    struct rt_bridge *b = rt_bridge_new(rt, &wrk);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(rt_bridge_send_ready(b, "seccomp"), 0);
    /* a script in three chunks */
    const char *name = "demo.lua", *src = "print('hi')";
    uint8_t all[64];
    uint32_t nl = (uint32_t)strlen(name);
    memcpy(all, &nl, 4);
    memcpy(all + 4, name, nl);
    memcpy(all + 4 + nl, src, strlen(src));
    uint32_t tot = 4 + nl + (uint32_t)strlen(src);
    CU_ASSERT_EQUAL(shm_tx_write(&brk.tx, PROTO_SCRIPT, PROTO_F_MORE, 0, all, 3), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&brk.tx, PROTO_SCRIPT, PROTO_F_MORE, 0, all + 3, 6), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&brk.tx, PROTO_SCRIPT, 0, 0, all + 9, tot - 9), 0);
    shm_tx_publish(&brk.tx);
    char *n = NULL, *s = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL(rt_bridge_wait_script(b, &n, &s, &len), 0);
    CU_ASSERT_STRING_EQUAL(n, name);
    CU_ASSERT_STRING_EQUAL(s, src);
    CU_ASSERT_EQUAL(len, strlen(src));
    free(n);
    free(s);
    const char *big = "local s = string.rep('p', 200000) print(s)\n";
    CU_ASSERT_EQUAL(rt_run(rt, "=print", big, strlen(big)), RT_OK);
    CU_ASSERT_EQUAL(rt_bridge_send_exit(b, 0, NULL), 0);
    uint8_t *buf = malloc(brk.rx.max_payload);
    struct shm_rec h;
    size_t printed = 0;
    int ready = 0, exits = 0, logs = 0;
    while (shm_rx_read_copy(&brk.rx, &h, buf, brk.rx.max_payload) == 1) {
        if (h.type == PROTO_READY) {
            ready++;
            CU_ASSERT_EQUAL(h.len, 7);
            CU_ASSERT_EQUAL(memcmp(buf, "seccomp", 7), 0);
        } else if (h.type == PROTO_LOG) {
            logs++;
            CU_ASSERT_FALSE(h.flags & PROTO_F_STDERR);
            CU_ASSERT(h.len <= brk.rx.max_payload);
            printed += h.len;
        } else if (h.type == PROTO_EXIT) {
            exits++;
        }
    }
    CU_ASSERT_EQUAL(ready, 1);
    CU_ASSERT_EQUAL(exits, 1);
    CU_ASSERT(logs >= 4); /* 200001 bytes in records of at most 64 KiB */
    CU_ASSERT_EQUAL(printed, 200001);
    free(buf);
    rt_bridge_free(b);
    rt_free(rt);
    shm_link_destroy(&wrk);
    shm_link_destroy(&brk);
}

/* Both rings full at once: the worker is blocked writing a large message
 * while the broker side refuses to read until it has written 2 MB of
 * messages. Only a worker that drains while it waits for room gets out. */
static void test_both_rings_full(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/', {channel_capacity = 64}))\n"
                         "assert(c:send(string.rep('s', 4 * 1024 * 1024), websocket.BINARY))\n"
                         "local ch = c:channel()\n"
                         "for i = 1, 40 do\n"
                         "  local m = assert(ch:receive())\n"
                         "  assert(#m.data == 50000 and m.data:sub(1, 1) == string.char(i))\n"
                         "end\n"
                         "print('no deadlock')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 64u << 20);
    usleep(100000); /* let the worker fill its ring */
    uint8_t *m = malloc(50000);
    for (int i = 1; i <= 40; i++) {
        memset(m, i, 50000);
        CU_ASSERT_EQUAL_FATAL(brk_send(&f, PROTO_MSG, PROTO_F_BINARY, 1, m, 50000, NULL, 0), 0);
    }
    free(m);
    struct shm_rec h;
    uint64_t data = 0, credits = 0;
    while (data < (4u << 20)) {
        CU_ASSERT_EQUAL_FATAL(brk_next_nc(&f, &h, WAIT_MS, &credits), 1);
        CU_ASSERT_EQUAL_FATAL(h.type, PROTO_SEND);
        data += h.len - ((h.flags & PROTO_F_BEGIN) ? 8 : 0);
    }
    CU_ASSERT_EQUAL(data, 4u << 20);
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "no deadlock"));
}

/* Many one-credit round trips (channel_capacity = 1), then a 5 MiB message:
 * positions far into the rings, padding at the wrap, credits exact. */
static void test_many_then_big(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/', {channel_capacity = 1}))\n"
                         "local ch = c:channel()\n"
                         "for i = 1, 20000 do assert(ch:receive().data == 'x') end\n"
                         "local m = assert(ch:receive())\n"
                         "assert(#m.data == 5 * 1024 * 1024 + 3, #m.data)\n"
                         "print('big after many')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    brk_accept(&f, 1, 65536);
    struct shm_rec h;
    uint64_t credits = 0;
    for (uint64_t i = 1; i <= 20000; i++) {
        CU_ASSERT_EQUAL_FATAL(brk_send(&f, PROTO_MSG, 0, 1, "x", 1, NULL, 0), 0);
        while (credits < i) {
            CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
            CU_ASSERT_EQUAL_FATAL(h.type, PROTO_CREDIT);
            uint32_t k;
            memcpy(&k, f.buf, 4);
            credits += k;
        }
        CU_ASSERT_EQUAL_FATAL(credits, i);
    }
    size_t n = (5u << 20) + 3;
    uint8_t *big = calloc(1, n);
    uint32_t max = shm_tx_max_payload(&f.brk.tx);
    for (size_t off = 0; off < n;) {
        uint32_t k = n - off > max ? max : (uint32_t)(n - off);
        uint16_t fl = PROTO_F_BINARY | (off + k < n ? PROTO_F_MORE : 0);
        CU_ASSERT_EQUAL_FATAL(brk_send(&f, PROTO_MSG, fl, 1, big + off, k, NULL, 0), 0);
        off += k;
    }
    free(big);
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "big after many"));
}

/* CONNECTED, messages and CLOSED published together, so one dispatch pass
 * handles them all before connect() resumes: the conn must survive until
 * connect() made the client, and every message must still be delivered. */
static void test_connected_and_closed_at_once(void)
{
    struct fx f;
    const char *script = "local c = assert(websocket.connect('ws://h/'))\n"
                         "time.sleep('1ms')\n"
                         "local ch = c:channel()\n"
                         "assert(ch:receive().data == 'a')\n"
                         "assert(ch:receive().data == 'b')\n"
                         "local v, ok = ch:receive()\n"
                         "assert(v == nil and ok == false)\n"
                         "assert(c:info().state == 'closed' and c:info().close_code == 1000)\n"
                         "assert(c:close() == true)\n"
                         "collectgarbage('collect')\n"
                         "print('survived')\n";
    CU_ASSERT_EQUAL_FATAL(fx_start(&f, script), 0);
    struct shm_rec h;
    CU_ASSERT_EQUAL_FATAL(brk_next(&f, &h, WAIT_MS), 1);
    CU_ASSERT_EQUAL(h.type, PROTO_CONNECT);
    usleep(20000); /* the worker is asleep in wait() now */
    struct proto_connected pc = {.tx_window = 4096};
    struct proto_closed cl = {.code = 1000, .by = PROTO_BY_SERVER};
    CU_ASSERT_EQUAL(shm_tx_write(&f.brk.tx, PROTO_CONNECTED, 0, 1, &pc, sizeof pc), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&f.brk.tx, PROTO_MSG, 0, 1, "a", 1), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&f.brk.tx, PROTO_MSG, 0, 1, "b", 1), 0);
    CU_ASSERT_EQUAL(shm_tx_write(&f.brk.tx, PROTO_CLOSED, 0, 1, &cl, sizeof cl), 0);
    shm_tx_publish(&f.brk.tx);
    fx_finish(&f, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.log, "survived"));
}

int suite_bridge(void)
{
    CU_pSuite s = CU_add_suite("bridge", NULL, NULL);
    if (!s) return CU_get_error();
    if (!CU_add_test(s, "CONNECT record fields byte by byte", test_connect_record) ||
        !CU_add_test(s, "CONNECT_FAIL mapping and details", test_connect_fail) ||
        !CU_add_test(s, "bad options: INVALID naming the option, nothing sent",
                     test_options_invalid) ||
        !CU_add_test(s, "no context without a broker", test_no_context) ||
        !CU_add_test(s, "3 MiB MSG assembled from chunks, then CLOSED", test_message_assembly) ||
        !CU_add_test(s, "CONNECTED, MSG and CLOSED in one batch",
                     test_connected_and_closed_at_once) ||
        !CU_add_test(s, "credits returned in batches", test_credits) ||
        !CU_add_test(s, "SEND chunks: BEGIN/MORE and the tx window", test_send_chunks_window) ||
        !CU_add_test(s, "both rings full: drain while waiting for room", test_both_rings_full) ||
        !CU_add_test(s, "20000 single-credit messages, then 5 MiB", test_many_then_big) ||
        !CU_add_test(s, "close codes and second close", test_close_codes) ||
        !CU_add_test(s, "ping/pong, timeout, conn end", test_ping) ||
        !CU_add_test(s, "write_timeout closes the connection", test_write_timeout) ||
        !CU_add_test(s, "__gc closes; SHUTDOWN ends the run", test_gc_and_shutdown) ||
        !CU_add_test(s, "SCRIPT intake, READY, LOG chunking, EXIT", test_print_and_script))
        return CU_get_error();
    return 0;
}

/* The broker command line: `broker run` (one script, one worker, exit with
 * the script's status), `broker serve` (tenants from a config file, see
 * serve.c), `broker policy check|explain`, `broker admin` (client of the
 * admin socket) and `broker demo-server` (the loopback demo/test server).
 * See `broker --help`.
 *
 * Layer: broker/. */
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "broker/addr.h"
#include "broker/admin.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/demo_server.h"
#include "broker/dns.h"
#include "broker/policy.h"
#include "broker/serve.h"
#include "broker/url.h"

static const char usage_top[] =
    "usage: broker COMMAND [OPTIONS]\n"
    "\n"
    "Runs untrusted Lua scripts in sandboxed workers and holds their WebSocket\n"
    "connections, allowing only what the policy allows.\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] SCRIPT.lua   run one script in one worker; exit with its status\n"
    "  serve --config FILE        run every tenant's scripts as a service\n"
    "  policy check FILE          validate a configuration file\n"
    "  policy explain --config FILE --tenant T URL\n"
    "                             say which rule decides a URL for a tenant, and why\n"
    "  admin [--socket P | --config FILE] CMD\n"
    "                             talk to a running service (status, metrics, reload\n"
    "                             [revoke], stop T[/S], start T[/S], drain)\n"
    "  demo-server [OPTIONS]      loopback WebSocket server used by the demo and tests\n"
    "\n"
    "`broker COMMAND --help` describes each command.\n";

static const char usage_run[] =
    "usage: broker run [OPTIONS] SCRIPT.lua\n"
    "\n"
    "Runs SCRIPT.lua in one sandboxed worker. Its output is printed prefixed\n"
    "with the worker id ([w1] ...). Nothing may be reached unless allowed.\n"
    "\n"
    "policy:\n"
    "  --allow PATTERN        allow websocket.connect and websocket.connect.url for\n"
    "                         URLs matching PATTERN (exact, prefix ending in *, or a\n"
    "                         host wildcard like wss://*.example.com/*); repeatable\n"
    "  --deny PATTERN         deny websocket.connect.url for PATTERN (deny wins)\n"
    "  --allow-addresses LIST address classes a host NAME may resolve to, comma\n"
    "                         separated (public, loopback, private, link-local, cgnat,\n"
    "                         ula, ...; default: public). IP literals in an allowed\n"
    "                         URL are allowed by that URL rule itself.\n"
    "  --ca-file FILE         extra trusted CA certificates (PEM) for wss://\n"
    "limits:\n"
    "  --mem BYTES            Lua memory cap (suffix K, M, G; default 64M)\n"
    "  --cpu MS               CPU budget in ms (default 0 = none)\n"
    "  --wall MS              wall-clock budget in ms (default 0 = none)\n"
    "  --max-conns N          concurrent connections (default 256)\n"
    "other:\n"
    "  --worker PATH          worker executable (default: next to broker)\n"
    "  --no-namespaces        do not try user/net/mount namespaces in the worker\n"
    "  --quiet                no broker diagnostics on stderr\n"
    "  --verbose, -v          also log worker start-up (sandbox layers) and ends\n"
    "\n"
    "exit status: 0 script ended normally, 1 script error, 2 memory cap,\n"
    "3 CPU or wall budget, 4 sandbox or protocol violation (the worker was\n"
    "killed as hostile), 5 crash or start failure,\n"
    "64 usage error.\n";

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024 * 1024, end++;
    if (*end) return -1;
    *out = v * mul;
    return 0;
}

static void on_run_end(struct brk *b, struct brk_worker *w)
{
    (void)w;
    if (b->n_workers == 0) brk_loop_stop(b->loop);
}

struct sigwatch {
    struct brk_io io;
    struct brk *b;
    int count;
};

static void on_signal(struct brk_loop *loop, struct brk_io *io, uint32_t events)
{
    struct sigwatch *sw = (struct sigwatch *)io;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == sizeof si) {
        sw->count++;
        brk_log(sw->b, "signal %u: shutting down", si.ssi_signo);
        if (sw->count > 1) {
            brk_loop_stop(loop);
            return;
        }
        brk_workers_shutdown(sw->b, 1001);
    }
}

static char *read_file(const char *path, size_t *len, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = 0, c = 65536;
    char *buf = malloc(c);
    for (;;) {
        if (!buf) {
            fclose(f);
            snprintf(err, cap, "%s: out of memory", path);
            return NULL;
        }
        n += fread(buf + n, 1, c - n, f);
        if (n < c) break;
        if (c >= 64u << 20) {
            fclose(f);
            free(buf);
            snprintf(err, cap, "%s: script larger than 64 MiB", path);
            return NULL;
        }
        c *= 2;
        buf = realloc(buf, c);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, cap, "%s: read error", path);
        return NULL;
    }
    *len = n;
    return buf;
}

static char *default_worker_path(void)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    if (n <= 0) return "worker";
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "worker");
    return path;
}

/* Sets up what every broker mode needs. */
static int broker_init(struct brk *b)
{
    signal(SIGPIPE, SIG_IGN);
    b->loop = brk_loop_new();
    b->dns = b->loop ? brk_dns_new(b->loop) : NULL;
    b->rdbuf_len = 128 * 1024;
    b->rdbuf = malloc(b->rdbuf_len);
    b->tls = SSL_CTX_new(TLS_client_method());
    if (!b->loop || !b->dns || !b->rdbuf || !b->tls) {
        fprintf(stderr, "broker: cannot initialise (out of memory or descriptors)\n");
        return -1;
    }
    SSL_CTX_set_min_proto_version(b->tls, TLS1_2_VERSION);
    SSL_CTX_set_verify(b->tls, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(b->tls) != 1)
        brk_log(b, "warning: cannot load the system trust store");
    if (b->cfg.ca_file && SSL_CTX_load_verify_locations(b->tls, b->cfg.ca_file, NULL) != 1) {
        fprintf(stderr, "broker: --ca-file %s: cannot load certificates\n", b->cfg.ca_file);
        return -1;
    }
    SSL_CTX_set_mode(b->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

static void broker_fini(struct brk *b)
{
    brk_dns_free(b->dns);
    brk_loop_free(b->loop);
    SSL_CTX_free(b->tls);
    free(b->rdbuf);
}

static int cmd_run(int argc, char **argv)
{
    static struct pol_policy policy = POL_POLICY_INIT;
    struct brk b = {0};
    b.cfg = (struct brk_config){.policy = &policy,
                                .addr_allowed = BRK_ADDR_DEFAULT_MASK,
                                .worker_mem = 64u << 20,
                                .ready_ms = 10000,
                                .max_conns = 256,
                                .ring_bytes = 4u << 20};
    const char *script = NULL;
    char err[512];
    int nrule = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char label[64];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_run, stdout);
            return 0;
        } else if (!strcmp(a, "--allow") && v) {
            snprintf(label, sizeof label, "--allow #%d", ++nrule);
            if (pol_allow_url(&policy, v, label, err, sizeof err) != 0) {
                fprintf(stderr, "broker run: --allow %s: %s\n", v, err);
                return 64;
            }
            i++;
        } else if (!strcmp(a, "--deny") && v) {
            snprintf(label, sizeof label, "--deny #%d", ++nrule);
            if (pol_add_rule(&policy, "websocket.connect.url", v, POL_DENY, label, err,
                             sizeof err) != 0) {
                fprintf(stderr, "broker run: --deny %s: %s\n", v, err);
                return 64;
            }
            i++;
        } else if (!strcmp(a, "--allow-addresses") && v) {
            unsigned mask;
            if (brk_addr_parse_mask(v, &mask, err, sizeof err) != 0) {
                fprintf(stderr, "broker run: --allow-addresses %s: %s\n", v, err);
                return 64;
            }
            b.cfg.addr_allowed = mask;
            i++;
        } else if (!strcmp(a, "--ca-file") && v) {
            b.cfg.ca_file = v;
            i++;
        } else if ((!strcmp(a, "--mem") || !strcmp(a, "--cpu") || !strcmp(a, "--wall") ||
                    !strcmp(a, "--max-conns")) &&
                   v) {
            uint64_t n;
            if (parse_size(v, &n) != 0 || (!strcmp(a, "--max-conns") && (n < 1 || n > 100000)) ||
                (!strcmp(a, "--mem") && n < (1u << 20))) {
                fprintf(stderr, "broker run: %s %s: not a valid value\n", a, v);
                return 64;
            }
            if (!strcmp(a, "--mem"))
                b.cfg.worker_mem = n;
            else if (!strcmp(a, "--cpu"))
                b.cfg.cpu_ms = n;
            else if (!strcmp(a, "--wall"))
                b.cfg.wall_ms = n;
            else
                b.cfg.max_conns = (uint32_t)n;
            i++;
        } else if (!strcmp(a, "--worker") && v) {
            b.cfg.worker_path = v;
            i++;
        } else if (!strcmp(a, "--no-namespaces")) {
            b.cfg.no_namespaces = 1;
        } else if (!strcmp(a, "--quiet")) {
            b.cfg.quiet = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            b.cfg.verbose = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "broker run: unknown or incomplete option %s (see --help)\n", a);
            return 64;
        } else if (!script) {
            script = a;
        } else {
            fprintf(stderr, "broker run: only one script may be given (see --help)\n");
            return 64;
        }
    }
    if (!script) {
        fputs(usage_run, stderr);
        return 64;
    }
    if (!b.cfg.worker_path) b.cfg.worker_path = default_worker_path();
    size_t len;
    char *src = read_file(script, &len, err, sizeof err);
    if (!src) {
        fprintf(stderr, "broker run: %s\n", err);
        return 64;
    }
    if (broker_init(&b) != 0) return 5;
    b.on_worker_end = on_run_end;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct sigwatch sw = {.b = &b};
    sw.io = (struct brk_io){.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC), .fn = on_signal};
    brk_io_set(b.loop, &sw.io, EPOLLIN);

    const char *base = strrchr(script, '/');
    base = base ? base + 1 : script;
    const char *serr = NULL;
    struct brk_worker *w = brk_worker_spawn(&b, base, src, len, &serr);
    free(src);
    if (!w) {
        fprintf(stderr, "broker run: cannot start a worker: %s\n", serr);
        return 5;
    }
    brk_loop_run(b.loop);
    int status = b.last_status;
    close(sw.io.fd);
    broker_fini(&b);
    pol_free(&policy);
    return status;
}

static const char usage_serve[] =
    "usage: broker serve --config FILE [--worker PATH] [--no-namespaces] [--verbose] [--quiet]\n"
    "\n"
    "Runs every [script] of every [tenant] in FILE in sandboxed workers, each\n"
    "under its tenant's policy and quotas; restarts failed scripts with back-off;\n"
    "answers `broker admin` on the configured admin_socket. Prints READY PID when\n"
    "it serves. SIGHUP reloads FILE, SIGTERM/SIGINT drain (close code 1012).\n"
    "See broker/OPERATORS.md.\n";

static int cmd_serve(int argc, char **argv)
{
    const char *config = NULL;
    struct brk b = {0};
    b.cfg = (struct brk_config){.addr_allowed = 0,
                                .worker_mem = 64u << 20,
                                .ready_ms = 5000,
                                .max_conns = 100000,
                                .ring_bytes = 4u << 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_serve, stdout);
            return 0;
        } else if (!strcmp(a, "--config") && v) {
            config = v;
            i++;
        } else if (!strcmp(a, "--worker") && v) {
            b.cfg.worker_path = v;
            i++;
        } else if (!strcmp(a, "--no-namespaces")) {
            b.cfg.no_namespaces = 1;
        } else if (!strcmp(a, "--quiet")) {
            b.cfg.quiet = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            b.cfg.verbose = 1;
        } else {
            fprintf(stderr, "broker serve: unknown or incomplete option %s (see --help)\n", a);
            return 64;
        }
    }
    if (!config) {
        fputs(usage_serve, stderr);
        return 64;
    }
    struct brk_cfgfile *cfg = NULL;
    char *errors = NULL;
    int n = brk_cfg_load(config, 0, &cfg, &errors);
    if (n) {
        fputs(errors ? errors : "", stderr);
        fprintf(stderr, "broker serve: %s: %d error%s; not started\n", config, n,
                n == 1 ? "" : "s");
        free(errors);
        return 2;
    }
    if (!b.cfg.worker_path)
        b.cfg.worker_path = cfg->worker_path ? cfg->worker_path : default_worker_path();
    b.cfg.ca_file = cfg->ca_file;
    b.cfg.ring_bytes = cfg->ring_bytes;
    b.cfg.ready_ms = cfg->ready_timeout_ms;
    /* The worker path and CA file are read at start; keep copies that outlive reloads. */
    static char worker_copy[PATH_MAX], ca_copy[PATH_MAX];
    snprintf(worker_copy, sizeof worker_copy, "%s", b.cfg.worker_path);
    b.cfg.worker_path = worker_copy;
    if (b.cfg.ca_file) {
        snprintf(ca_copy, sizeof ca_copy, "%s", b.cfg.ca_file);
        b.cfg.ca_file = ca_copy;
    }
    if (broker_init(&b) != 0) {
        brk_cfg_free(cfg);
        return 5;
    }
    int status = brk_serve_run(&b, config, cfg);
    broker_fini(&b);
    return status;
}

static const char usage_policy[] =
    "usage: broker policy check FILE\n"
    "       broker policy explain --config FILE --tenant TENANT URL\n"
    "\n"
    "check: validates FILE completely; prints every error as file:line: message\n"
    "(exit 2) or a summary (exit 0).\n"
    "explain: canonicalises URL and shows, rule by rule, how TENANT's policy decides\n"
    "websocket.connect and websocket.connect.url, and the address classes its host\n"
    "may resolve to. Exit 0 when allowed, 1 when denied.\n";

static int cmd_policy(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_policy, argc < 2 ? stderr : stdout);
        return argc < 2 ? 64 : 0;
    }
    const char *config = NULL, *tenant = NULL, *url = NULL;
    int explain = !strcmp(argv[1], "explain");
    if (!explain && strcmp(argv[1], "check")) {
        fprintf(stderr, "broker policy: unknown subcommand '%s' (check or explain)\n", argv[1]);
        return 64;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (explain && !strcmp(a, "--config") && v)
            config = v, i++;
        else if (explain && !strcmp(a, "--tenant") && v)
            tenant = v, i++;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_policy, stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "broker policy: unknown or incomplete option %s\n", a);
            return 64;
        } else if (!explain && !config)
            config = a;
        else if (explain && !url)
            url = a;
        else {
            fputs(usage_policy, stderr);
            return 64;
        }
    }
    if (!config || (explain && (!tenant || !url))) {
        fputs(usage_policy, stderr);
        return 64;
    }
    struct brk_cfgfile *cfg = NULL;
    char *errors = NULL;
    int n = brk_cfg_load(config, explain ? BRK_CFG_NO_FILE_CHECKS : 0, &cfg, &errors);
    if (n) {
        fputs(errors ? errors : "", stderr);
        fprintf(stderr, "%s: %d error%s\n", config, n, n == 1 ? "" : "s");
        free(errors);
        return 2;
    }
    if (!explain) {
        printf("%s: ok: %zu tenants, %zu scripts, %zu rules (digest %016llx)\n", config,
               cfg->n_tenants, cfg->n_scripts, cfg->n_rules, (unsigned long long)cfg->digest);
        brk_cfg_free(cfg);
        return 0;
    }
    const struct brk_cfg_tenant *t = brk_cfg_tenant(cfg, tenant);
    if (!t) {
        fprintf(stderr, "broker policy explain: %s has no tenant '%s'\n", config, tenant);
        brk_cfg_free(cfg);
        return 64;
    }
    static struct brk_url u;
    char err[256];
    int rc = 1;
    printf("tenant %s (%s:%d)\n", t->name, config, t->line);
    if (brk_url_parse(url, strlen(url), &u, err, sizeof err) != 0) {
        printf("URL: invalid: %s\n=> DENY (INVALID: the broker refuses it before any rule)\n", err);
        brk_cfg_free(cfg);
        return 1;
    }
    printf("URL: %s\ncanonical: %s\n\n", url, u.canonical);
    static char buf[65536];
    int e1 = pol_explain(&t->policy, POL_ACT_CONNECT, "*", buf, sizeof buf);
    printf("%s\n", buf);
    int e2 = pol_explain(&t->policy, POL_ACT_URL, u.canonical, buf, sizeof buf);
    printf("%s\n", buf);
    char classes[512] = "";
    for (int c = 0; c < BRK_ADDR_NCLASSES; c++)
        if (t->addr_mask & BRK_ADDR_BIT(c)) {
            size_t l = strlen(classes);
            snprintf(classes + l, sizeof classes - l, "%s%s", l ? "," : "",
                     brk_addr_class_name((enum brk_addr_class)c));
        }
    if (u.host_is_ip)
        printf("address: %s is an IP literal: the URL rule decides (no address class check)\n",
               u.host);
    else
        printf("address: every address %s resolves to must be of a class in allow_addresses = "
               "%s\n",
               u.host, classes[0] ? classes : "(none)");
    if (e1 == POL_ALLOW && e2 == POL_ALLOW) {
        printf("=> ALLOW (subject to the address check at connect time)\n");
        rc = 0;
    } else {
        printf("=> DENY (PERMISSION_DENIED)\n");
    }
    brk_cfg_free(cfg);
    return rc;
}

static int cmd_admin(int argc, char **argv)
{
    const char *sock = NULL, *config = NULL;
    int i = 1;
    for (; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--socket") && v)
            sock = v, i++;
        else if (!strcmp(argv[i], "--config") && v)
            config = v, i++;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs("usage: broker admin [--socket PATH | --config FILE] COMMAND [ARG]\n"
                  "commands: status [--json], metrics, reload [revoke],\n"
                  "          stop TENANT[/SCRIPT] [now], start TENANT[/SCRIPT], drain\n",
                  stdout);
            return 0;
        } else
            break;
    }
    if (i >= argc || (!sock && !config)) {
        fprintf(stderr, "usage: broker admin [--socket PATH | --config FILE] COMMAND [ARG]\n");
        return 64;
    }
    struct brk_cfgfile *cfg = NULL;
    if (!sock) {
        char *errors = NULL;
        if (brk_cfg_load(config, BRK_CFG_NO_FILE_CHECKS, &cfg, &errors) != 0 ||
            !cfg->admin_socket) {
            fputs(errors ? errors : "", stderr);
            fprintf(stderr, "broker admin: no admin_socket found in %s\n", config);
            free(errors);
            brk_cfg_free(cfg);
            return 64;
        }
        sock = cfg->admin_socket;
    }
    char req[1024] = "";
    for (; i < argc; i++) {
        size_t l = strlen(req);
        snprintf(req + l, sizeof req - l, "%s%s", l ? " " : "", argv[i]);
    }
    int rc = brk_admin_request(sock, req, stdout, stderr);
    brk_cfg_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage_top, argc < 2 ? stderr : stdout);
        return argc < 2 ? 64 : 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "policy")) return cmd_policy(argc - 1, argv + 1);
    if (!strcmp(argv[1], "admin")) return cmd_admin(argc - 1, argv + 1);
    if (!strcmp(argv[1], "demo-server")) return brk_demo_server_main(argc - 1, argv + 1);
    fprintf(stderr, "broker: unknown command '%s' (see broker --help)\n", argv[1]);
    return 64;
}

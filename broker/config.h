/* The operator's configuration file for `broker serve`: tenants, their
 * scripts, policy rules, address classes and quotas. Parsed and validated
 * completely before anything uses it: every problem is reported as
 * "file:line: what is wrong", and a file with any problem yields no
 * configuration at all (nothing is half-applied).
 *
 * Layer: broker/, plain C. Uses broker/policy.h and broker/addr.h to compile
 * rules and address classes; no I/O besides reading the file and checking
 * that script files exist. Never runs Lua (the broker runs no Lua: the format
 * is a small INI-like line format, see broker/OPERATORS.md).
 *
 * Format (one setting per line, '#' starts a comment):
 *   [broker]                 admin_socket, audit_log, worker, ca_file,
 *                            drain_timeout, ring_bytes
 *   [tenant NAME]            allow_addresses, quotas (see struct brk_quota),
 *                            rule = EFFECT ACTIONS RESOURCE [RESOURCE...]
 *   [script TENANT/NAME]     path, restart, restart_delay, restart_max_delay,
 *                            start_limit, start_window, autostart */
#ifndef BRK_CONFIG_H
#define BRK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "broker/policy.h"

#define BRK_CFG_NAME_MAX 64 /* bytes of a tenant or script name */

/* Per-tenant quotas; every field has a documented default (brk_quota_defaults). */
struct brk_quota {
    uint32_t max_workers;          /* concurrent workers (running scripts) */
    uint32_t max_connections;      /* concurrent connections, all the tenant's workers */
    uint32_t connects_per_sec;     /* connection attempts per second (token bucket, burst = rate) */
    uint64_t bytes_in_per_sec;     /* bytes server -> scripts per second (0 = unlimited) */
    uint64_t bytes_out_per_sec;    /* bytes scripts -> server per second (0 = unlimited) */
    uint32_t messages_in_per_sec;  /* messages server -> scripts per second (0 = unlimited) */
    uint32_t messages_out_per_sec; /* messages scripts -> server per second (0 = unlimited) */
    uint64_t max_read_limit;       /* largest read_limit a script may ask for, bytes */
    uint32_t max_channel_capacity; /* largest channel_capacity a script may ask for */
    int max_compression;           /* highest compression rank allowed: 0 disabled,
                                      1 no_context, 2 context_takeover (= any) */
    uint64_t memory;               /* Lua memory cap per worker, bytes */
    uint64_t cpu_ms;               /* CPU budget per script run, ms (0 = none) */
    uint64_t wall_ms;              /* wall-clock budget per script run, ms (0 = none) */
    uint32_t log_lines_per_sec;    /* output lines per second, burst = 2x (0 = unlimited) */
};

/* Fills q with the documented defaults. */
void brk_quota_defaults(struct brk_quota *q);

/* Restart policies of a script. */
enum brk_restart { BRK_RESTART_NEVER, BRK_RESTART_ON_FAILURE, BRK_RESTART_ALWAYS };

struct brk_cfg_tenant;

/* One [script TENANT/NAME] section. */
struct brk_cfg_script {
    char *name;                    /* owned: NAME part */
    char *tenant_name;             /* owned: TENANT part */
    struct brk_cfg_tenant *tenant; /* resolved tenant (borrowed, same config) */
    char *path;                    /* owned: script file, made absolute from the config's dir */
    int restart;                   /* enum brk_restart */
    uint32_t restart_delay_ms;     /* first back-off delay */
    uint32_t restart_max_delay_ms; /* back-off cap (doubling) */
    uint32_t start_limit;          /* starts allowed within start_window before giving up */
    uint32_t start_window_ms;      /* window of start_limit */
    int autostart;                 /* 1: start with the service (0: only by `admin start`) */
    int line;                      /* line of the section header */
};

/* One [tenant NAME] section. */
struct brk_cfg_tenant {
    char *name;               /* owned */
    int line;                 /* line of the section header */
    unsigned addr_mask;       /* address classes a host name may resolve to (addr.h bits) */
    struct pol_policy policy; /* compiled rules, labelled "file:line" (owned) */
    struct brk_quota quota;   /* quotas */
};

/* A whole configuration file. */
struct brk_cfgfile {
    char *path;                     /* owned: file it came from */
    char *admin_socket;             /* owned or NULL: admin Unix socket path */
    char *audit_log;                /* owned or NULL: JSON-lines audit file */
    char *worker_path;              /* owned or NULL: worker executable */
    char *ca_file;                  /* owned or NULL: extra CA certificates */
    uint32_t drain_timeout_ms;      /* bound on a drain before workers are killed */
    uint64_t ring_bytes;            /* ring size per direction per worker */
    uint32_t ready_timeout_ms;      /* a worker must send READY within this */
    struct brk_cfg_tenant *tenants; /* owned array */
    size_t n_tenants;
    struct brk_cfg_script *scripts; /* owned array */
    size_t n_scripts;
    size_t n_rules;  /* rules in all tenants */
    uint64_t digest; /* FNV-1a of the file's bytes (identifies a revision) */
};

/* Options of the loader. */
#define BRK_CFG_NO_FILE_CHECKS 0x1u /* do not check that script files exist (tests) */

/* Loads and validates path. Returns 0 and *out (free with brk_cfg_free), or
 * the number of errors (> 0) with *errors a malloc'd text of lines
 * "file:line: message\n" (the caller frees it) and *out NULL. */
int brk_cfg_load(const char *path, unsigned flags, struct brk_cfgfile **out, char **errors);

/* The same for text already in memory; name is used in messages and its
 * directory resolves relative script paths. */
int brk_cfg_parse(const char *name, const char *text, size_t len, unsigned flags,
                  struct brk_cfgfile **out, char **errors);

/* Frees a configuration (NULL is fine). */
void brk_cfg_free(struct brk_cfgfile *c);

/* Finds a tenant or a script by name; NULL if none. */
struct brk_cfg_tenant *brk_cfg_tenant(const struct brk_cfgfile *c, const char *name);
struct brk_cfg_script *brk_cfg_script(const struct brk_cfgfile *c, const char *tenant,
                                      const char *name);

/* Duration text: "250", "250ms", "5s", "1m30s", "1h" -> ms. Returns 0 or -1. */
int brk_cfg_parse_duration(const char *s, uint64_t *ms);
/* Size/count text: "123", "64K", "16M", "1G" (powers of 1024) -> n. Returns 0 or -1. */
int brk_cfg_parse_size(const char *s, uint64_t *n);

/* Rank of a PROTO_COMPRESSION mode (0 disabled, 1 no_context, 2 context_takeover),
 * and the name of a rank as used in the file. */
int brk_cfg_compression_rank(int proto_mode);
const char *brk_cfg_compression_name(int rank);

#endif

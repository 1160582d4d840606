/* policy.h - per-destination TLS policies (smtp_tls_policy_maps), the room's front door: a policy
 * row and its whole-row check against the level/attribute rules of Postfix's
 * src/smtp/smtp_tls_policy.c (policy.c), the grammar of each value (policy_grammar.c; the
 * destination's is destination.c), and, through the headers included at the end, the JSON form
 * and its table-driven validation shared by the single-row and the bulk paths (policy_json.h),
 * the rendering of the map text from whitelisted bytes only (policy_render.h) and a reader of map
 * source text that follows Postfix's rules (policy_map_read.h).
 * Pure (no I/O, no logging, no global state); any thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/names.h"
#include "core/problem.h"

enum tls_level {
        TLS_LEVEL_NONE,
        TLS_LEVEL_MAY,
        TLS_LEVEL_ENCRYPT,
        TLS_LEVEL_DANE,
        TLS_LEVEL_DANE_ONLY,
        TLS_LEVEL_FINGERPRINT,
        TLS_LEVEL_VERIFY,
        TLS_LEVEL_SECURE,
        _TLS_LEVEL_MAX,
};

const char *tls_level_to_string(enum tls_level l);             /* NULL when out of range */
int tls_level_from_string(const char *s, enum tls_level *ret); /* exact, lower case; -EINVAL */

#define POLICY_DESTINATION_MAX 255  /* bytes, normalized */
#define POLICY_NOTE_MAX        1024 /* bytes of UTF-8 */
#define POLICY_MATCH_MAX       32   /* items */
#define POLICY_EXCLUDE_MAX     32   /* items */
#define POLICY_EXCLUDE_ITEM    64   /* bytes per cipher name */
#define POLICY_MANAGER_MAX     64
#define POLICY_SERVERNAME_MAX  253 /* bytes: a host name, or the keyword hostname or nexthop */
#define POLICY_TAFILE_MAX      255 /* bytes of an absolute path */
/* A manager name (managed_by, ?manager=): [a-z0-9][a-z0-9._-]{0,63}. */
bool policy_manager_is_valid(const char *s);

/* connection_reuse: not set (Postfix's smtp_tls_connection_reuse applies), no, yes. */
enum policy_reuse {
        POLICY_REUSE_UNSET,
        POLICY_REUSE_NO,
        POLICY_REUSE_YES,
};

/* One policy row. The strings held here are normalized and validated (policy_apply_json() is
 * the way in); match and exclude are NULL-terminated arrays of n_match/n_exclude strings, or
 * NULL when empty. A zeroed struct is a valid empty value for policy_done()/policy_apply_json().
 */
struct policy {
        char destination[POLICY_DESTINATION_MAX + 1]; /* normalized (lower case) */
        enum tls_level level;
        char **match; /* fingerprint: "AB:CD:..." (upper case); verify/secure: patterns */
        size_t n_match;
        char protocols[128]; /* normalized ("!SSLv2:!SSLv3", ">=TLSv1.2"); "" = none */
        char ciphers[16];    /* export|low|medium|high|null; "" = none */
        char **exclude;      /* OpenSSL cipher names or aliases */
        size_t n_exclude;
        char servername[POLICY_SERVERNAME_MAX + 1]; /* SNI: host name, "hostname", "nexthop"; "" */
        char tafile[POLICY_TAFILE_MAX + 1];         /* verify/secure trust anchors; "" = none */
        enum policy_reuse connection_reuse;         /* UNSET: smtp_tls_connection_reuse */
        char *note; /* stored, shown by the API, never rendered; NULL = "" */
        bool enabled;
        char managed_by[POLICY_MANAGER_MAX + 1]; /* "" = not managed */
};

/* An empty policy: level none, no attributes, enabled. */
void policy_init(struct policy *p);
/* Frees what p holds and leaves it zeroed. */
void policy_done(struct policy *p);
/* Deep copy into dst (which is overwritten, not freed); -ENOMEM. */
int policy_copy(struct policy *dst, const struct policy *src);

/* Normalizes a destination (src/core/destination.c, destination.h): "example.com" (a domain),
 * ".example.com" (its subdomains only), "relay.example:587" and "relay.example:submission"
 * (host:port), "[mx.example.net]", "[mx.example.net]:465", "[mx.example.net]:submission",
 * "[192.0.2.1]:25", "[ipv6:2001:db8::1]:25", "[2001:db8::1]"; '_' in names; an
 * internationalized name becomes its A-label. Upper case is folded; otherwise the spelling is
 * kept (Postfix looks the next-hop up as written). Anything else is invalid_destination at
 * `field`, with a detail that says what is wrong. NUL-terminated input; out receives the key
 * (ASCII, at most 255 bytes). */
int policy_destination_normalize(const char *in, char out[static POLICY_DESTINATION_MAX + 1],
                                 const char *field, struct problem *reterr);

/* A fingerprint: a SHA-256 or SHA-512 digest, colon-separated hex pairs (or plain hex),
 * normalized to upper-case pairs joined with ':' (the form `openssl x509 -fingerprint` prints and
 * certificates rows hold). invalid_value at field. POLICY_FINGERPRINT_MAX holds a pattern (254)
 * or a SHA-512 fingerprint (64 pairs and colons: 191). */
#define POLICY_FINGERPRINT_MAX 256
int policy_fingerprint_normalize(const char *in, char out[static POLICY_FINGERPRINT_MAX],
                                 const char *field, struct problem *reterr);

/* The digest Postfix computes fingerprints with (the effective smtp_tls_fingerprint_digest, one
 * for the whole smtp client): its name and the length of one of its fingerprints in the normalized
 * form above (3 characters a byte, less one: md5 47, sha256 95, sha512 191). */
struct fingerprint_digest {
        char name[32];
        size_t len;
};
/* A normalized fingerprint `fpr` that digest d can never produce (another length) is
 * invalid_value at field, naming smtp_tls_fingerprint_digest: Postfix would compare it with
 * every certificate's digest and defer all mail to the destination. */
int policy_check_fingerprint_digest(const struct fingerprint_digest *d, const char *fpr,
                                    const char *field, struct problem *reterr);

/* Normalizes a protocols attribute (SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2 TLSv1.3, each optionally
 * with '!', or one ">=NAME" and/or one "<=NAME"; separated by ':', ',' or spaces) into
 * ':'-joined canonical form. "" stays "". invalid_value at field. */
int policy_protocols_normalize(const char *in, char out[static 128], const char *field,
                               struct problem *reterr);

/* The one rule for who may change a row's manager (every write path, in the API and again in the
 * worker): turning managed_by from `was` into `now` ("" or NULL = unmanaged; a new row was "")
 * needs scope 'admin'. Keeping the manager as it is needs nothing more. forbidden at
 * prefix + "/managed_by" otherwise. */
int policy_check_manager_change(const char *was, const char *now, enum scope scope,
                                const char *prefix, struct problem *reterr);

/* Appends to warnings ({code, detail}, naming the destination) what p's own attributes make
 * likely wrong though Postfix accepts it: null_ciphers (no encryption below TLSv1.3),
 * weak_protocols (nothing from TLSv1.2 up at may/encrypt), servername_ignored (dane levels send
 * the TLSA base domain). */
void policy_warnings_add(const struct policy *p, json_t *warnings);

/* What a policy's non-empty exclude drops of a main.cf exclusion list (smtp_tls_exclude_ciphers
 * or smtp_tls_mandatory_exclude_ciphers, items split at commas, colons and blanks): Postfix's
 * set_cipher_grade() takes the policy's list INSTEAD of main.cf's, then adds eNULL at encrypt
 * and aNULL above it. The items p->exclude lacks, joined by ", " into out ("" when none). */
void policy_exclude_dropped(const struct policy *p, const char *list, char *out, size_t size);

/* Validates a policy as a whole (e.g. a row read back from the database): destination, level,
 * each attribute's form, and the level/attribute rules. Problems name prefix + "/field". */
int policy_check(const struct policy *p, const char *prefix, struct problem *reterr);

/* {destination, level, match, protocols|null, ciphers|null, exclude, servername|null,
 * tafile|null, connection_reuse|null, note, enabled, managed_by|null}; created_at/updated_at are
 * the caller's. */
json_t *policy_to_json(const struct policy *p);

/* The room's other modules: the JSON form, the map text and reading it back. */
#include "core/policy_json.h"
#include "core/policy_map_read.h"
#include "core/policy_render.h"

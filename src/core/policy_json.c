/* policy_json.c - the JSON form of a policy (policy_json.h): one spec table for the single-row
 * and bulk paths, the merge of a PUT/POST/PATCH body onto a row, the read-only members, and the
 * combinations checked on every write. Pure; any thread. */
#include "core/policy_json.h"

#include <stdint.h>
#include <stdio.h>

#include "core/json_spec.h"
#include "core/policy_grammar.h"

static int oom(struct problem *reterr)
{
        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        return -ENOMEM;
}

/* ---- the JSON body ---- */

static bool has_nul(json_t *v)
{
        return strlen(json_string_value(v)) != json_string_length(v);
}

static int check_destination(const struct json_spec *spec, json_t *v, const char *field,
                             struct problem *reterr)
{
        char key[POLICY_DESTINATION_MAX + 1];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, field,
                           "the destination contains a NUL byte");
        return policy_destination_normalize(json_string_value(v), key, field, reterr);
}

static int check_items(json_t *v, const char *field, struct problem *reterr,
                       int (*item)(const char *, const char *, struct problem *))
{
        size_t i;
        json_t *it;
        char f[320];
        json_array_foreach (v, i, it) {
                snprintf(f, sizeof(f), "%s/%zu", field, i);
                if (has_nul(it))
                        return bad(reterr, PROBLEM_INVALID_VALUE, f,
                                   "the item contains a NUL byte");
                int r = item(json_string_value(it), f, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_match(const struct json_spec *spec, json_t *v, const char *field,
                       struct problem *reterr)
{
        return check_items(v, field, reterr, policy_check_match_item);
}

static int check_exclude(const struct json_spec *spec, json_t *v, const char *field,
                         struct problem *reterr)
{
        return check_items(v, field, reterr, policy_check_exclude_item);
}

static int check_protocols(const struct json_spec *spec, json_t *v, const char *field,
                           struct problem *reterr)
{
        char out[128];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "protocols contains a NUL byte");
        return policy_protocols_normalize(json_string_value(v), out, field, reterr);
}

static int check_servername(const struct json_spec *spec, json_t *v, const char *field,
                            struct problem *reterr)
{
        char out[POLICY_SERVERNAME_MAX + 1];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "servername contains a NUL byte");
        return policy_servername_normalize(json_string_value(v), out, field, reterr);
}

static int check_tafile_json(const struct json_spec *spec, json_t *v, const char *field,
                             struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "tafile contains a NUL byte");
        return policy_check_tafile(json_string_value(v), field, reterr);
}

static int check_reuse(const struct json_spec *spec, json_t *v, const char *field,
                       struct problem *reterr)
{
        if (!json_is_boolean(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "connection_reuse must be true, false or null");
        return 0;
}

static int check_note(const struct json_spec *spec, json_t *v, const char *field,
                      struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "note contains a NUL byte");
        return 0;
}

static int check_manager(const struct json_spec *spec, json_t *v, const char *field,
                         struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "managed_by contains a NUL byte");
        if (!policy_manager_is_valid(json_string_value(v)))
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "managed_by is a manager name, [a-z0-9][a-z0-9._-]{0,63}");
        return 0;
}

struct policy_body {
        const char *destination;
        const char *level;
        json_t *match;
        const char *protocols;
        const char *ciphers;
        json_t *exclude;
        const char *servername;
        const char *tafile;
        json_t *connection_reuse;
        const char *note;
        bool enabled;
        const char *managed_by;
        json_t *ignored;
};

enum {
        F_DESTINATION,
        F_LEVEL,
        F_MATCH,
        F_PROTOCOLS,
        F_CIPHERS,
        F_EXCLUDE,
        F_SERVERNAME,
        F_TAFILE,
        F_REUSE,
        F_NOTE,
        F_ENABLED,
        F_MANAGED_BY,
        F_CREATED_AT,
        F_UPDATED_AT,
        F_GENERATION,
        F_WARNINGS,
        F_FLEET,
};

#define PB(f) offsetof(struct policy_body, f)
/* "destination" is required unless the URL names it or a patch is applied: checked in
 * policy_apply_json(). Read-only created_at, updated_at and generation (a write's reply) are
 * accepted, so a client may PUT back what it got, when they are the row's current values:
 * policy_check_read_only(); the reply's warnings are accepted and ignored. The level/attribute
 * rules need the merged result: policy_check(). */
static const struct json_spec policy_spec[] = {
        [F_DESTINATION] = { "destination", JS_STRING, 0, PB(destination),
                            .max = POLICY_DESTINATION_MAX, .check = check_destination,
                            .invalid_code = PROBLEM_INVALID_DESTINATION },
        [F_LEVEL] = { "level", JS_CHOICE, JS_REQUIRED, PB(level), .choices = policy_level_names },
        [F_MATCH] = { "match", JS_STRING_ARRAY, JS_NULLABLE, PB(match), .max = POLICY_MATCH_MAX,
                      .check = check_match },
        [F_PROTOCOLS] = { "protocols", JS_STRING, JS_NULLABLE, PB(protocols), .max = 256,
                          .check = check_protocols },
        [F_CIPHERS] = { "ciphers", JS_CHOICE, JS_NULLABLE, PB(ciphers),
                        .choices = policy_cipher_grades },
        [F_EXCLUDE] = { "exclude", JS_STRING_ARRAY, JS_NULLABLE, PB(exclude),
                        .max = POLICY_EXCLUDE_MAX, .check = check_exclude },
        [F_SERVERNAME] = { "servername", JS_STRING, JS_NULLABLE, PB(servername),
                           .max = POLICY_SERVERNAME_MAX, .check = check_servername },
        [F_TAFILE] = { "tafile", JS_STRING, JS_NULLABLE, PB(tafile), .max = POLICY_TAFILE_MAX,
                       .check = check_tafile_json },
        [F_REUSE] = { "connection_reuse", JS_ANY, JS_NULLABLE, PB(connection_reuse),
                      .check = check_reuse },
        [F_NOTE] = { "note", JS_STRING, JS_NULLABLE, PB(note), .max = POLICY_NOTE_MAX,
                     .check = check_note },
        [F_ENABLED] = { "enabled", JS_BOOL, 0, PB(enabled), .choices = NULL },
        [F_MANAGED_BY] = { "managed_by", JS_STRING, JS_NULLABLE, PB(managed_by),
                           .max = POLICY_MANAGER_MAX, .check = check_manager },
        [F_CREATED_AT] = { "created_at", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_UPDATED_AT] = { "updated_at", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_GENERATION] = { "generation", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_WARNINGS] = { "warnings", JS_ANY, JS_REPLY_ONLY, PB(ignored), .choices = NULL },
        [F_FLEET] = { "fleet", JS_ANY, JS_REPLY_ONLY, PB(ignored), .choices = NULL },
        { 0 },
};

#define HAS(f) (present & (UINT64_C(1) << (f)))

static int strv_from_json(json_t *a, char ***ret, size_t *n)
{
        size_t i, k = json_array_size(a);
        json_t *it;
        *ret = NULL;
        *n = 0;
        if (k == 0)
                return 0;
        char **v = calloc(k + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        json_array_foreach (a, i, it)
                if (!(v[i] = strdup(json_string_value(it)))) {
                        strv_free(v, i);
                        return -ENOMEM;
                }
        *ret = v;
        *n = k;
        return 0;
}

/* A list member of a write (NULL: absent or null) replaces the row's list. */
static int strv_replace(json_t *from, char ***v, size_t *n)
{
        strv_free(*v, *n);
        *v = NULL;
        *n = 0;
        return from ? strv_from_json(from, v, n) : 0;
}

/* Rewrites match items into their normalized form for the level that takes them. */
static int normalize_match(struct policy *p, const char *prefix, struct problem *reterr)
{
        char buf[FPR_MAX], f[320];
        if (!(policy_level_rules[p->level].allowed & A(MATCH)))
                return 0; /* policy_check() refuses the attribute itself */
        for (size_t i = 0; i < p->n_match; i++) {
                snprintf(f, sizeof(f), "%s/match/%zu", prefix, i);
                int r = policy_match_item_normalize(p->level, p->match[i], buf, f, reterr);
                if (r < 0)
                        return r;
                if (!streq(buf, p->match[i])) {
                        char *s = strdup(buf);
                        if (!s)
                                return oom(reterr);
                        free(p->match[i]);
                        p->match[i] = s;
                }
        }
        return 0;
}

int policy_check_read_only(json_t *body, json_t *current, const char *prefix,
                           struct problem *reterr)
{
        return json_check_read_only(body, policy_spec, current, prefix ? prefix : "", reterr);
}

void policy_copy_read_only(json_t *body, json_t *normalized)
{
        json_copy_read_only(body, policy_spec, normalized);
}

/* Combinations Postfix accepts in the map but that cannot deliver a message, checked on every
 * write (not on rows read back: a row stored before this check keeps rendering as it was). Seen
 * with Postfix 3.7 and OpenSSL 3.0 (tests/system/test_postfix_policy.py):
 * - ciphers=null at encrypt: Postfix adds eNULL to the exclusions at encrypt, so no cipher is
 *   left ("no cipher match"; every delivery deferred, whatever the peer).
 * - protocols that leave neither TLSv1.2 nor TLSv1.3 at a level that authenticates the peer:
 *   Postfix runs OpenSSL at security level 1 there, where OpenSSL 3 refuses TLSv1 and TLSv1.1. */
static int check_combination(const struct policy *p, const char *prefix, struct problem *reterr)
{
        char f[320];
        const char *level = policy_level_names[p->level];
        if (p->level == TLS_LEVEL_ENCRYPT && streq(p->ciphers, "null"))
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "ciphers", -1),
                           "ciphers null at level encrypt leaves no cipher (Postfix excludes "
                           "eNULL at encrypt): every delivery to this destination would be "
                           "deferred; use may for unencrypted TLS or another grade");
        if (!policy_level_rules[p->level].weak_tls_ok && !(policy_protocol_set(p) & PROTO_STRONG))
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "protocols", -1),
                           "protocols leaves only TLS versions below TLSv1.2, which OpenSSL 3 "
                           "refuses at level %s (Postfix authenticates the peer at OpenSSL "
                           "security level 1): every delivery would be deferred",
                           level);
        return 0;
}

int policy_apply_json(struct policy *p, json_t *body, bool patch, const char *url_destination,
                      const char *prefix, struct problem *reterr)
{
        struct policy_body b = { 0 };
        uint64_t present = 0;
        char key[POLICY_DESTINATION_MAX + 1], other[POLICY_DESTINATION_MAX + 1], field[300];
        struct policy n;
        int r;

        if (!prefix)
                prefix = "";
        r = json_dispatch(body, policy_spec, &b, &present, patch ? JSON_DISPATCH_PATCH : 0, prefix,
                          reterr);
        if (r < 0)
                return r;

        snprintf(field, sizeof(field), "%s/destination", prefix);
        if (url_destination) {
                r = policy_destination_normalize(url_destination, key, "", reterr);
                if (r < 0)
                        return r;
                if (HAS(F_DESTINATION)) {
                        r = policy_destination_normalize(b.destination, other, field, reterr);
                        if (r < 0)
                                return r;
                        if (!streq(key, other))
                                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                           "the destination '%s' is not the one in the URL ('%s')",
                                           other, key);
                }
        } else if (HAS(F_DESTINATION)) {
                r = policy_destination_normalize(b.destination, key, field, reterr);
                if (r < 0)
                        return r;
                if (patch && p->destination[0] && !streq(key, p->destination))
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "a policy's destination cannot be changed ('%s' is not '%s')",
                                   key, p->destination);
        } else if (patch && p->destination[0]) {
                memcpy(key, p->destination, sizeof(key));
        } else {
                return bad(reterr, PROBLEM_MISSING_FIELD, field, "destination is required");
        }

        if (patch) {
                if (policy_copy(&n, p) < 0)
                        return oom(reterr);
        } else {
                /* PUT replaces: what is not sent takes its default; the manager is the caller's */
                policy_init(&n);
                memcpy(n.managed_by, p->managed_by, sizeof(n.managed_by));
                n.managed_by[sizeof(n.managed_by) - 1] = 0;
        }
        memcpy(n.destination, key, sizeof(n.destination));
        if (HAS(F_LEVEL))
                tls_level_from_string(b.level, &n.level);
        if (HAS(F_MATCH) && strv_replace(b.match, &n.match, &n.n_match) < 0)
                goto nomem;
        if (HAS(F_PROTOCOLS)) {
                n.protocols[0] = 0;
                if (b.protocols &&
                    policy_protocols_normalize(b.protocols, n.protocols, "", NULL) < 0)
                        n.protocols[0] = 0; /* cannot happen: checked by the spec */
        }
        if (HAS(F_CIPHERS))
                snprintf(n.ciphers, sizeof(n.ciphers), "%s", b.ciphers ? b.ciphers : "");
        if (HAS(F_EXCLUDE) && strv_replace(b.exclude, &n.exclude, &n.n_exclude) < 0)
                goto nomem;
        if (HAS(F_SERVERNAME)) {
                n.servername[0] = 0;
                if (b.servername &&
                    policy_servername_normalize(b.servername, n.servername, "", NULL) < 0)
                        n.servername[0] = 0; /* cannot happen: checked by the spec */
        }
        if (HAS(F_TAFILE))
                snprintf(n.tafile, sizeof(n.tafile), "%s", b.tafile ? b.tafile : "");
        if (HAS(F_REUSE))
                n.connection_reuse = !b.connection_reuse                ? POLICY_REUSE_UNSET
                                     : json_is_true(b.connection_reuse) ? POLICY_REUSE_YES
                                                                        : POLICY_REUSE_NO;
        if (HAS(F_NOTE)) {
                free(n.note);
                n.note = NULL;
                if (b.note && !(n.note = strdup(b.note)))
                        goto nomem;
        }
        if (HAS(F_ENABLED))
                n.enabled = b.enabled;
        if (HAS(F_MANAGED_BY))
                snprintf(n.managed_by, sizeof(n.managed_by), "%s",
                         b.managed_by ? b.managed_by : "");

        r = normalize_match(&n, prefix, reterr);
        if (r >= 0)
                r = policy_check(&n, prefix, reterr);
        if (r >= 0)
                r = check_combination(&n, prefix, reterr);
        if (r < 0) {
                policy_done(&n);
                return r;
        }
        policy_done(p);
        *p = n;
        return 0;
nomem:
        policy_done(&n);
        return oom(reterr);
}

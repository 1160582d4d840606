/* policy.c - a TLS policy row (policy.h): its lifetime, level name lookups, the whole-row check
 * against Postfix's level/attribute rules, who may change its manager, the warnings about what
 * Postfix accepts but is likely wrong, and its JSON form. The JSON body is policy_json.c, the
 * grammar of each value policy_grammar.c, the map text policy_render.c and policy_map_read.c.
 * Pure; any thread. */
#include "core/policy.h"

#include <stdint.h>
#include <stdio.h>

#include "core/name_code.h"
#include "core/policy_grammar.h"

const char *tls_level_to_string(enum tls_level l)
{
        return (unsigned)l < _TLS_LEVEL_MAX ? policy_level_names[l] : NULL;
}

int tls_level_from_string(const char *s, enum tls_level *ret)
{
        int i = name_to_index(policy_level_names, _TLS_LEVEL_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum tls_level)i;
        return 0;
}

static int strv_copy(char *const *v, size_t n, char ***ret)
{
        *ret = NULL;
        if (n == 0)
                return 0;
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(v[i] ? v[i] : ""))) {
                        strv_free(c, i);
                        return -ENOMEM;
                }
        *ret = c;
        return 0;
}

/* ---- struct policy ---- */

void policy_init(struct policy *p)
{
        *p = (struct policy){ .level = TLS_LEVEL_NONE, .enabled = true };
}

void policy_done(struct policy *p)
{
        if (!p)
                return;
        strv_free(p->match, p->n_match);
        strv_free(p->exclude, p->n_exclude);
        free(p->note);
        *p = (struct policy){ 0 };
}

int policy_copy(struct policy *dst, const struct policy *src)
{
        struct policy n = *src;
        n.match = n.exclude = NULL;
        n.note = NULL;
        if (strv_copy(src->match, src->n_match, &n.match) < 0)
                goto fail;
        if (strv_copy(src->exclude, src->n_exclude, &n.exclude) < 0)
                goto fail;
        if (src->note && !(n.note = strdup(src->note)))
                goto fail;
        *dst = n;
        return 0;
fail:
        n.n_match = n.match ? n.n_match : 0;
        n.n_exclude = n.exclude ? n.n_exclude : 0;
        policy_done(&n);
        return -ENOMEM;
}

int policy_check_manager_change(const char *was, const char *now, enum scope scope,
                                const char *prefix, struct problem *reterr)
{
        char f[320];
        was = was ? was : "";
        now = now ? now : "";
        if (scope >= SCOPE_ADMIN || streq(was, now))
                return 0;
        if (!*was)
                return problem_set(reterr, PROBLEM_FORBIDDEN, fld(f, prefix, "managed_by", -1),
                                   "making a row managed (by \"%s\") needs a token with scope "
                                   "'admin'",
                                   now);
        return problem_set(reterr, PROBLEM_FORBIDDEN, fld(f, prefix, "managed_by", -1),
                           "changing the manager of a row managed by \"%s\" needs a token with "
                           "scope 'admin'",
                           was);
}

/* Runs a check quietly first (the fast path), and again naming the field only if it fails. */
#define CHECK_QUIET(call_quiet, call_loud)                                                         \
        do {                                                                                       \
                if ((call_quiet) < 0) {                                                            \
                        (void)(call_loud);                                                         \
                        return -EINVAL;                                                            \
                }                                                                                  \
        } while (0)

void policy_warnings_add(const struct policy *p, json_t *warnings)
{
        const char *level = tls_level_to_string(p->level);
        if (!level || p->level == TLS_LEVEL_NONE)
                return;
        if (streq(p->ciphers, "null") && p->level != TLS_LEVEL_ENCRYPT)
                warnings_add(warnings, "null_ciphers",
                             "%s: ciphers null offers TLSv1.2 and older peers only ciphers without "
                             "encryption, which OpenSSL refuses: only TLSv1.3 (whose ciphers the "
                             "grade does not restrict) can work",
                             p->destination);
        if (policy_level_rules[p->level].weak_tls_ok && !(policy_protocol_set(p) & PROTO_STRONG))
                warnings_add(warnings, "weak_protocols",
                             "%s: protocols leaves only TLS versions below TLSv1.2 (deprecated, "
                             "RFC 8996); peers that speak only TLSv1.2 or TLSv1.3 fail the "
                             "handshake",
                             p->destination);
        if (p->servername[0] && (p->level == TLS_LEVEL_DANE || p->level == TLS_LEVEL_DANE_ONLY))
                warnings_add(warnings, "servername_ignored",
                             "%s: at level %s Postfix sends the TLSA base domain as SNI: "
                             "servername is ignored",
                             p->destination, level);
}

void policy_exclude_dropped(const struct policy *p, const char *list, char *out, size_t size)
{
        size_t o = 0;
        out[0] = 0;
        if (!p->n_exclude)
                return; /* no exclude of its own: main.cf's lists apply */
        for (const char *s = list; *s;) {
                size_t n = strcspn(s, ", \t:");
                bool kept = n == 0;
                for (size_t i = 0; !kept && i < p->n_exclude; i++)
                        kept = strlen(p->exclude[i]) == n && strncmp(p->exclude[i], s, n) == 0;
                /* Postfix adds these itself whatever the policy says (set_cipher_grade) */
                if (!kept && p->level == TLS_LEVEL_ENCRYPT && n == 5 && !strncmp(s, "eNULL", 5))
                        kept = true;
                if (!kept && p->level > TLS_LEVEL_ENCRYPT && n == 5 && !strncmp(s, "aNULL", 5))
                        kept = true;
                if (!kept) {
                        int w = snprintf(out + o, size - o, "%s%.*s", o ? ", " : "", (int)n, s);
                        if (w < 0 || (size_t)w >= size - o) {
                                out[o] = 0; /* what fits, never a cut item */
                                break;
                        }
                        o += (size_t)w;
                }
                s += n;
                s += strspn(s, ", \t:");
        }
}

int policy_check(const struct policy *p, const char *prefix, struct problem *reterr)
{
        char f[320], buf[FPR_MAX];
        char key[POLICY_DESTINATION_MAX + 1];

        if (!prefix)
                prefix = "";
        if ((unsigned)p->level >= _TLS_LEVEL_MAX)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "level", -1),
                           "unknown level");
        const char *level = policy_level_names[p->level];

        if (!memchr(p->destination, 0, sizeof(p->destination)))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, fld(f, prefix, "destination", -1),
                           "the destination is too long");
        CHECK_QUIET(policy_destination_normalize(p->destination, key, "", NULL),
                    policy_destination_normalize(p->destination, key,
                                                 fld(f, prefix, "destination", -1), reterr));
        if (!streq(key, p->destination))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, fld(f, prefix, "destination", -1),
                           "the destination is not in lower case");

        /* Which level takes which attribute: Postfix defers all mail on a violation. */
        unsigned have = (p->n_match ? A(MATCH) : 0) | (p->protocols[0] ? A(PROTOCOLS) : 0) |
                        (p->ciphers[0] ? A(CIPHERS) : 0) | (p->n_exclude ? A(EXCLUDE) : 0) |
                        (p->servername[0] ? A(SERVERNAME) : 0) | (p->tafile[0] ? A(TAFILE) : 0) |
                        (p->connection_reuse != POLICY_REUSE_UNSET ? A(REUSE) : 0);
        const struct level_rule *rule = &policy_level_rules[p->level];
        for (unsigned a = 0; a < _ATTR_MAX; a++) {
                if (!(have & (1u << a)) || (rule->allowed & (1u << a)))
                        continue;
                fld(f, prefix, policy_attr_names[a], -1);
                if (p->level == TLS_LEVEL_NONE)
                        return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, f,
                                   "level none takes no attributes (TLS is off); remove %s",
                                   policy_attr_names[a]);
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, f,
                           "%s is not valid at level %s (Postfix would defer all mail to this "
                           "destination)%s",
                           policy_attr_names[a], level,
                           a == ATTR_MATCH    ? "; match is for fingerprint, verify and secure"
                           : a == ATTR_TAFILE ? "; tafile is for verify and secure"
                                              : "");
        }
        if (rule->required & ~have)
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "match", -1),
                           "level %s requires match: the SHA-256 or SHA-512 fingerprints of the "
                           "server certificates",
                           level);

        /* Each attribute in its normalized, whitelisted form. */
        if (p->n_match > POLICY_MATCH_MAX || (p->n_match && !p->match))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "match", -1),
                           "match takes at most %d items", POLICY_MATCH_MAX);
        for (size_t i = 0; i < p->n_match; i++) {
                if (!p->match[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "match", (ssize_t)i), "empty match item");
                CHECK_QUIET(policy_match_item_normalize(p->level, p->match[i], buf, "", NULL),
                            policy_match_item_normalize(p->level, p->match[i], buf,
                                                        fld(f, prefix, "match", (ssize_t)i),
                                                        reterr));
                if (!streq(buf, p->match[i]))
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "match", (ssize_t)i),
                                   "match item not normalized");
        }
        if (!memchr(p->protocols, 0, sizeof(p->protocols)))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "protocols", -1),
                           "protocols is too long");
        if (p->protocols[0]) {
                CHECK_QUIET(policy_protocols_normalize(p->protocols, buf, "", NULL),
                            policy_protocols_normalize(p->protocols, buf,
                                                       fld(f, prefix, "protocols", -1), reterr));
                if (!streq(buf, p->protocols))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "protocols", -1),
                                   "protocols is not normalized");
        }
        if (p->ciphers[0]) {
                size_t i;
                for (i = 0; policy_cipher_grades[i]; i++)
                        if (strncmp(policy_cipher_grades[i], p->ciphers, sizeof(p->ciphers)) == 0)
                                break;
                if (!policy_cipher_grades[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "ciphers", -1),
                                   "ciphers must be one of: export, low, medium, high, null");
        }
        if (p->n_exclude > POLICY_EXCLUDE_MAX || (p->n_exclude && !p->exclude))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "exclude", -1),
                           "exclude takes at most %d items", POLICY_EXCLUDE_MAX);
        for (size_t i = 0; i < p->n_exclude; i++) {
                if (!p->exclude[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "exclude", (ssize_t)i), "empty exclude item");
                CHECK_QUIET(policy_check_exclude_item(p->exclude[i], "", NULL),
                            policy_check_exclude_item(
                                p->exclude[i], fld(f, prefix, "exclude", (ssize_t)i), reterr));
        }
        if (p->servername[0]) {
                char sn[POLICY_SERVERNAME_MAX + 1];
                if (!memchr(p->servername, 0, sizeof(p->servername)))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "servername", -1),
                                   "servername is too long");
                CHECK_QUIET(policy_servername_normalize(p->servername, sn, "", NULL),
                            policy_servername_normalize(p->servername, sn,
                                                        fld(f, prefix, "servername", -1), reterr));
                if (!streq(sn, p->servername))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "servername", -1),
                                   "servername is not in lower case");
        }
        if (p->tafile[0]) {
                if (!memchr(p->tafile, 0, sizeof(p->tafile)))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "tafile", -1),
                                   "tafile is too long");
                CHECK_QUIET(policy_check_tafile(p->tafile, "", NULL),
                            policy_check_tafile(p->tafile, fld(f, prefix, "tafile", -1), reterr));
        }
        if ((unsigned)p->connection_reuse > POLICY_REUSE_YES)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "connection_reuse", -1),
                           "connection_reuse must be true, false or null");
        if (p->note && strlen(p->note) > POLICY_NOTE_MAX)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "note", -1),
                           "note is longer than %d bytes", POLICY_NOTE_MAX);
        if (!memchr(p->managed_by, 0, sizeof(p->managed_by)) ||
            (p->managed_by[0] && !policy_manager_is_valid(p->managed_by)))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "managed_by", -1),
                           "managed_by is a manager name, [a-z0-9][a-z0-9._-]{0,63}");
        return 0;
}

static json_t *strv_json(char *const *v, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i] ? v[i] : ""));
        return a;
}

json_t *policy_to_json(const struct policy *p)
{
        json_t *j = json_object();
        if (!j)
                return NULL;
        const char *level = tls_level_to_string(p->level);
        json_object_set_new(j, "destination", json_string(p->destination));
        json_object_set_new(j, "level", level ? json_string(level) : json_null());
        json_object_set_new(j, "match", strv_json(p->match, p->n_match));
        json_object_set_new(j, "protocols",
                            p->protocols[0] ? json_string(p->protocols) : json_null());
        json_object_set_new(j, "ciphers", p->ciphers[0] ? json_string(p->ciphers) : json_null());
        json_object_set_new(j, "exclude", strv_json(p->exclude, p->n_exclude));
        json_object_set_new(j, "servername",
                            p->servername[0] ? json_string(p->servername) : json_null());
        json_object_set_new(j, "tafile", p->tafile[0] ? json_string(p->tafile) : json_null());
        json_object_set_new(j, "connection_reuse",
                            p->connection_reuse == POLICY_REUSE_UNSET
                                ? json_null()
                                : json_boolean(p->connection_reuse == POLICY_REUSE_YES));
        json_object_set_new(j, "note", json_string(p->note ? p->note : ""));
        json_object_set_new(j, "enabled", json_boolean(p->enabled));
        json_object_set_new(j, "managed_by",
                            p->managed_by[0] ? json_string(p->managed_by) : json_null());
        return j;
}

/* policy_grammar.h - for the files of the policy room only (src/core/policy*.c; the rest of the
 * program includes policy.h): the words of a policy entry and the grammar of each attribute's
 * value (policy_grammar.c; its functions for everyone are declared in policy.h), and the small
 * helpers the room's files share. Pure; any thread. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/chars.h"
#include "core/policy.h"
#include "util.h"

/* Indexed by enum tls_level, NULL-terminated (a JSON choice list). */
extern const char *const policy_level_names[_TLS_LEVEL_MAX + 1];
/* The ciphers attribute's grades, NULL-terminated. */
extern const char *const policy_cipher_grades[];

/* Protocol sets: bits of the protocols SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3. */
#define PROTO_ALL    0x3fu
#define PROTO_TLS    0x3cu /* what OpenSSL 3 can still negotiate: TLSv1 .. TLSv1.3 */
#define PROTO_STRONG 0x30u /* TLSv1.2, TLSv1.3: what OpenSSL 3 negotiates at security level 1 */

/* The attributes smtptlsd renders, in rendering order, and which level takes which (after
 * Postfix 3.7 src/smtp/smtp_tls_policy.c: every attribute is ignored at "none", which we refuse
 * instead; "match" only at fingerprint, verify and secure; fingerprint needs at least one;
 * "tafile" only where trust is PKIX (verify, secure); servername and connection_reuse at every
 * level that has TLS). */
enum attr {
        ATTR_MATCH,
        ATTR_PROTOCOLS,
        ATTR_CIPHERS,
        ATTR_EXCLUDE,
        ATTR_SERVERNAME,
        ATTR_TAFILE,
        ATTR_REUSE,
        _ATTR_MAX,
};
extern const char *const policy_attr_names[_ATTR_MAX];
#define A(x) (1u << ATTR_##x)

/* Which attributes a level takes (bits A(x)) and requires; see policy_level_rules. */
struct level_rule {
        unsigned allowed, required;
        bool weak_tls_ok;
};
extern const struct level_rule policy_level_rules[_TLS_LEVEL_MAX];

#define FPR_MAX POLICY_FINGERPRINT_MAX

/* The grammar of each value: invalid_value at field (reterr may be NULL). */
int policy_check_exclude_item(const char *s, const char *field, struct problem *reterr);
int policy_servername_normalize(const char *in, char out[static POLICY_SERVERNAME_MAX + 1],
                                const char *field, struct problem *reterr);
int policy_check_tafile(const char *s, const char *field, struct problem *reterr);
int policy_check_match_item(const char *s, const char *field, struct problem *reterr);
int policy_match_item_normalize(enum tls_level l, const char *s, char out[static FPR_MAX],
                                const char *field, struct problem *reterr);
/* The protocols a policy leaves enabled (PROTO_* bits): its own list, or every one when it
 * sets none. */
unsigned policy_protocol_set(const struct policy *p);

/* ---- small helpers ---- */

static inline int bad(struct problem *reterr, enum problem_code code, const char *field,
                      const char *fmt, ...) _printf_(4, 5);
static inline int bad(struct problem *reterr, enum problem_code code, const char *field,
                      const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        problem_setv(reterr, code, field, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static inline void strv_free(char **v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* The JSON pointer prefix/name[/i] (i < 0: none), built only when a problem is reported. */
static inline const char *fld(char f[static 320], const char *prefix, const char *name, ssize_t i)
{
        if (i >= 0)
                snprintf(f, 320, "%s/%s/%zd", prefix, name, i);
        else
                snprintf(f, 320, "%s/%s", prefix, name);
        return f;
}

static inline int buf_add(struct strbuf *b, const char *s, size_t n)
{
        return strbuf_add(b, s, n);
}

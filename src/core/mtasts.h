/* mtasts.h - MTA-STS (RFC 8461): the `_mta-sts` TXT record (3.1), the policy file's fields
 * (3.2) and whether an MX host name matches the policy's mx patterns (4.1). Pure (no I/O, no
 * state); any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define MTASTS_MX_MAX       32  /* mx patterns kept */
#define MTASTS_NAME_MAX     253 /* bytes of one pattern */
#define MTASTS_ID_MAX       32  /* bytes of the record's id (1*32 alphanumerics) */
#define MTASTS_MAX_AGE_MAX  31557600
#define MTASTS_POLICY_LIMIT 65536 /* bytes of a policy file read at most */

enum mtasts_mode {
        MTASTS_MODE_ENFORCE,
        MTASTS_MODE_TESTING,
        MTASTS_MODE_NONE,
};
const char *mtasts_mode_name(enum mtasts_mode m);

/* The id of a TXT record "v=STSv1; id=20160831085700Z;" into id[MTASTS_ID_MAX + 1]: 0, or
 * -ENOENT when the text is not an STS record (does not start with "v=STSv1" and then ';',
 * whitespace or its end), -EINVAL with err[size] (and id "") when it is one but off the grammar
 * of 3.1 (no or a bad id, fields not separated by ';', an extension that is not name=value). */
int mtasts_txt_parse(const char *txt, char id[MTASTS_ID_MAX + 1], char *err, size_t size);

struct mtasts_policy {
        enum mtasts_mode mode;
        long max_age;
        char mx[MTASTS_MX_MAX][MTASTS_NAME_MAX + 1];
        size_t n_mx;
};

/* A policy file of len bytes (lines "key: value" ending in CRLF or LF, RFC 8461 3.2; names and
 * values case-sensitive, in any order): version STSv1, mode, max_age (1 to 10 digits,
 * 0..31557600), mx (["*."] and a host name, one per line, the first MTASTS_MX_MAX kept; enforce
 * and testing need one) - unknown keys are ignored, as the RFC says, but a line must be
 * "key: value" by the grammar; blank lines are let through. -EINVAL with err[size] naming what is
 * wrong. */
int mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *p, char *err,
                        size_t size);

/* Whether host (an MX host name, no trailing dot, in the text form of dns_wire_name(): "a\.b" is
 * one label) matches one of p's mx patterns: the same name case-insensitively, or "*.d" for a
 * name of exactly one more label under d (4.1). */
bool mtasts_mx_matches(const struct mtasts_policy *p, const char *host);

/* destination.h - the grammar of a policy destination, the key smtp_tls_policy_maps is searched
 * with. Postfix's smtp looks the next-hop up as the delivery request spells it (transport map,
 * relayhost, or the recipient domain), folded to lower case, and walks parent domains (".d") only
 * for a plain domain (Postfix 3.7 src/smtp/smtp_tls_policy.c, tls_policy_lookup()). So the key
 * keeps the administrator's spelling; only case is folded and internationalized names take one
 * canonical form (the A-label), rendered into the map under both spellings. docs/api.md has the
 * table of accepted forms. Pure (libidn2 for IDNA, no I/O); any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/problem.h"

/* The normalized key (policy.h POLICY_DESTINATION_MAX) and its U-label spelling, which may be
 * up to four bytes per character of the A-label. */
#define DESTINATION_KEY_MAX  255
#define DESTINATION_UKEY_MAX (4 * DESTINATION_KEY_MAX)

/* How destination_check_name() judges a host name. */
enum {
        NAME_BRACKETED = 1 << 0,  /* inside [ ]: the detail for an all-digit name says so */
        NAME_UNDERSCORE = 1 << 1, /* '_' allowed in labels, as Postfix's valid_hostname() does */
};

/* A DNS name of n bytes (ASCII; no trailing dot): labels of 1..63 letters, digits and '-' (and
 * '_' with NAME_UNDERSCORE), no '-' at either end of a label, at most 253 bytes, and not ending in
 * an all-digit label. `what` starts the detail ("the destination"); code at field. */
int destination_check_name(const char *s, size_t n, const char *what, unsigned flags,
                           enum problem_code code, const char *field, struct problem *reterr);

/* The U-label spelling of a normalized key that has A-labels ("xn--bcher-kva.example" ->
 * "bücher.example", "[xn--bcher-kva.example]:25" -> "[bücher.example]:25"): 1 and the spelling
 * in out; 0 (out "") when the key has no A-label (every other key has one spelling only). */
int destination_unicode_key(const char *key, char out[static DESTINATION_UKEY_MAX + 1]);

/* policy_map_text.h - TLS policies as a Postfix map source file, both ways: a file read into a
 * bulk's items (PUT /api/v1/tls-policies with Content-Type: text/plain) and the policies written
 * as one (GET with Accept: text/plain). Entries are read by postmap(1)'s rules (policy_map_read.h:
 * comments, blank lines, continuation lines) and each value by those of Postfix's smtp client for
 * smtp_tls_policy_maps: the level, then attributes separated by whitespace or commas, a
 * `{ name = value }` form, names and the level in any case, `match` any number of times (split on
 * '|' at the fingerprint level, ':' otherwise), `connection_reuse` the last one, every other
 * attribute once.
 *
 * What a map cannot say travels in comments postmap skips, so that a file written here reads back
 * to the same policies: `#@disabled KEY VALUE` is a disabled policy, and `#@note "JSON string"`
 * the note of the entry that follows it. Pure (no I/O); any thread. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "core/policy.h"
#include "core/problem.h"
#include "util.h"

/* Called for each policy of the file in file order: item is its JSON body (destination, level,
 * the attributes, note and enabled when the file says them; the callback's to keep), line where
 * its entry starts (1-based), raw and raw_len the bytes the item was made of alone (the entry's
 * key, as postmap folds it, to its value, continuation lines joined) or NULL and 0 when more made
 * it (a #@note, #@disabled). A negative return stops the walk and is returned. */
typedef int (*policy_map_item_fn)(void *ctx, json_t *item, size_t line, const char *raw,
                                  size_t raw_len, struct problem *reterr);
/* Asked first for an entry with such raw bytes: 1 when the caller knows them already (no item
 * is made: the walk goes on), 0 to have the item made, < 0 to stop. */
typedef int (*policy_map_known_fn)(void *ctx, const char *raw, size_t raw_len, size_t line,
                                   struct problem *reterr);

/* Reads text; a malformed value, an unknown or repeated attribute, or a note that no entry
 * follows is invalid_value with field "/lines/N" (the line of the entry). known may be NULL.
 * -ENOMEM. */
int policy_map_text_items(const char *text, size_t len, policy_map_known_fn known,
                          policy_map_item_fn fn, void *ctx, struct problem *reterr);

/* One entry of a map (key as postmap keeps it, value by the smtp client's rules) as a policy's
 * JSON body: what an import takes from a map it reads with `postmap -s`; problems name
 * /lines/LINE. */
int policy_map_entry_item(const char *key, size_t key_len, const char *value, size_t value_len,
                          size_t line, json_t **ret, struct problem *reterr);

/* The file's first lines (comments): what it is and how many policies it holds. */
int policy_map_text_header(struct strbuf *out, size_t count);
/* One policy as the file has it: its note line (if any), then "KEY<TAB>VALUE", or the
 * #@disabled line; -EINVAL for a policy that does not render (policy_render_entry). */
int policy_map_text_add(struct strbuf *out, const struct policy *p);

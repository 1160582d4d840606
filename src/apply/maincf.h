/* maincf.h - main.cf as text: read parameters the way Postfix does (logical lines after
 * readllines(): continuation lines, comments and blank lines between them, the name and its
 * "= value" possibly on different lines), and rewrite only the managed parameters, keeping every
 * other byte (comments, order, spacing, line endings) as it was. The one parser of main.cf text
 * in smtptlsd. Pure; the worker thread uses it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/maincf_param.h"

/* One definition: name, and its value as `postconf -n`/`-h` print it (unexpanded, trimmed, every
 * run of whitespace, line breaks of continuation lines included, as one space). A negative return
 * stops the walk and is returned. */
typedef int (*maincf_each_fn)(const char *name, const char *value, void *arg);

/* Calls fn for every definition, in file order (duplicates included: Postfix keeps the last). A
 * logical line without '=' after its name (which Postfix refuses) is skipped. */
int maincf_each(const char *text, size_t len, maincf_each_fn fn, void *arg);

/* The value (as maincf_each gives it) of the LAST definition of name (Postfix: a later
 * definition wins). -ENOENT when not defined; *ret is malloc'ed. */
int maincf_get(const char *text, size_t len, const char *name, char **ret);

/* Rewrites text so that each param has exactly its value: the first definition (its whole
 * logical line: every physical line of it) is replaced by one line "name = value", later
 * duplicates are removed with their continuation lines, missing parameters are appended; comment
 * and blank lines between continuation lines stay, as every line of other parameters. Written
 * lines end as the line they replace ("\r\n" or "\n"); appended ones as the file's first line.
 * Values must be one line without control characters (-EINVAL). *ret is malloc'ed and
 * NUL-terminated. */
int maincf_edit(const char *text, size_t len, const struct maincf_param *params, size_t n,
                char **ret, size_t *retlen);

/* Map lists (smtp_tls_policy_maps and the like), split the way Postfix's maps_create() does
 * (mystrtokq(): separators are commas and whitespace; a "{ ... }" group, nested, belongs to the
 * token it is in). A token names the map at path when it is "type:path" (the type may be a chain,
 * "proxy:hash"); nothing else is interpreted ($parameters, inline maps, unknown types).
 *
 * Whether the list `value` names the map at path. */
bool maincf_maps_names(const char *value, const char *path);

/* The list with `ours` ("type:path") first and every token of `value` (NULL = none) after it,
 * verbatim and in order, except those naming the map at path (so ours is never listed twice and
 * a changed map type replaces the old token); tokens joined by ", ". Whitespace inside a brace
 * group (a tab, say) is written as a space, so the result is one clean line. Idempotent:
 * merging the result again gives the result. Also without the tokens listed in skip
 * (NULL-terminated, byte for byte; NULL: none): the administrator's maps whose entries were
 * imported (the adopted maps). *ret is malloc'ed. */
int maincf_maps_merge(const char *value, const char *ours, const char *path,
                      const char *const *skip, char **ret);

/* Each token of the list `value` (NULL = none), in order, as the merge splits them; fn's
 * negative value stops the walk and is returned. */
typedef int (*maincf_map_fn)(void *ctx, const char *token, size_t len);
int maincf_maps_each(const char *value, maincf_map_fn fn, void *ctx);

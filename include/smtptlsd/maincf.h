/* maincf.h - main.cf as text: read the value of a parameter the way Postfix does, and rewrite only
 * the managed parameters, keeping every other byte (comments, order, spacing) as it was. Pure; the
 * worker thread uses it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct maincf_param {
        const char *name;
        const char *value; /* NULL: remove the parameter (back to Postfix's default) */
};

/* The value of the LAST definition of name (Postfix: a later definition wins), continuation lines
 * joined by single spaces. -ENOENT when not defined; *ret is malloc'ed. */
int maincf_get(const char *text, size_t len, const char *name, char **ret);

/* Rewrites text so that each param has exactly its value: the first definition is replaced by
 * one line "name = value", later duplicates are removed with their continuation lines, missing
 * parameters are appended. Values must be one line without control characters (-EINVAL).
 * *ret is malloc'ed and NUL-terminated. */
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
 * merging the result again gives the result. *ret is malloc'ed. */
int maincf_maps_merge(const char *value, const char *ours, const char *path, char **ret);

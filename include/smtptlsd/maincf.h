/* maincf.h - main.cf as text: read the value of a parameter the way Postfix does, and rewrite only
 * the managed parameters, keeping every other byte (comments, order, spacing) as it was. Pure; the
 * worker thread uses it. */
#pragma once

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

/* cursor.h - the opaque paging cursors of lists (`next`, `?after=`): which list, where the page
 * ended, and a check, in base64url. Pure; any thread. */
#pragma once

#include <stddef.h>

#include "core/problem.h"

/* Longest position a cursor carries (a destination is at most 255 characters). */
#define CURSOR_POSITION_MAX 300
/* Longest cursor text, with its NUL. */
#define CURSOR_MAX BASE64URL_SIZE(CURSOR_POSITION_MAX + 16)

/* The lists that page. A cursor of one list is refused by another. */
enum cursor_list {
        CURSOR_POLICIES = 'p',
        CURSOR_JOBS = 'j',
};

/* The cursor of `list` that continues after `position` (no NUL inside; at most
 * CURSOR_POSITION_MAX characters) into buf (CURSOR_MAX). -EINVAL when it does not fit. */
int cursor_encode(enum cursor_list list, const char *position, char *buf, size_t size);
/* The position in cursor `text` of `list`, copied into pos (CURSOR_POSITION_MAX + 1): 0, or
 * -EINVAL with invalid_value on field "after" when the text is not a cursor of that list (not
 * base64url, wrong version or list, a failed check: a changed or truncated cursor). The caller
 * checks the position's own syntax. */
int cursor_decode(enum cursor_list list, const char *text, char *pos, size_t size,
                  struct problem *reterr);

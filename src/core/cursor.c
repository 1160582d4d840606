/* cursor.c - opaque paging cursors. A cursor is base64url of
 *   <list letter> "1:" <position> <check: the first 6 bytes of SHA-256 over what precedes it>
 * The check needs no secret (a cursor only says where a page ended, which the page showed): it
 * makes a typed, truncated or edited cursor a clear 422 instead of a silently wrong page, and the
 * version digit lets the form change later. Pure; any thread. */
#include <openssl/evp.h>
#include <string.h>

#include "core/cursor.h"

#define CURSOR_VERSION '1'
#define CHECK_LEN      6
#define HEADER_LEN     3 /* list, version, ':' */

static int check_of(const unsigned char *data, size_t n, unsigned char out[CHECK_LEN])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < CHECK_LEN)
                return -EIO;
        memcpy(out, md, CHECK_LEN);
        return 0;
}

int cursor_encode(enum cursor_list list, const char *position, char *buf, size_t size)
{
        unsigned char raw[HEADER_LEN + CURSOR_POSITION_MAX + CHECK_LEN];
        size_t n = strlen(position);
        if (n > CURSOR_POSITION_MAX || size < BASE64URL_SIZE(HEADER_LEN + n + CHECK_LEN))
                return -EINVAL;
        raw[0] = (unsigned char)list;
        raw[1] = CURSOR_VERSION;
        raw[2] = ':';
        memcpy(raw + HEADER_LEN, position, n);
        int r = check_of(raw, HEADER_LEN + n, raw + HEADER_LEN + n);
        if (r < 0)
                return r;
        base64url_encode(raw, HEADER_LEN + n + CHECK_LEN, buf);
        return 0;
}

int cursor_decode(enum cursor_list list, const char *text, char *pos, size_t size,
                  struct problem *reterr)
{
        unsigned char raw[HEADER_LEN + CURSOR_POSITION_MAX + CHECK_LEN], check[CHECK_LEN];
        ssize_t n = base64url_decode(text, raw, sizeof(raw));
        const char *why = NULL;
        if (n < 0)
                why = "it is not a cursor this list gave";
        else if (n < HEADER_LEN + CHECK_LEN || raw[1] != CURSOR_VERSION || raw[2] != ':')
                why = "it is not a cursor this list gave";
        else if (raw[0] != (unsigned char)list)
                why = "it is the cursor of another list";
        else if (check_of(raw, (size_t)n - CHECK_LEN, check) < 0 ||
                 memcmp(check, raw + n - CHECK_LEN, CHECK_LEN) != 0)
                why = "it was changed or cut short";
        else {
                size_t len = (size_t)n - CHECK_LEN - HEADER_LEN;
                if (len + 1 > size || memchr(raw + HEADER_LEN, 0, len))
                        why = "it is not a cursor this list gave";
                else {
                        memcpy(pos, raw + HEADER_LEN, len);
                        pos[len] = 0;
                        return 0;
                }
        }
        return problem_set(reterr, PROBLEM_INVALID_VALUE, "after",
                           "after is not a valid cursor (%s); use the `next` of the previous "
                           "page, or leave after out for the first page",
                           why);
}

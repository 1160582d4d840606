/* json_spec.c - json_dispatch(): the one walker of the per-resource spec tables. Pure; any
 * thread. */
#include "core/json_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STRING_MAX_DEFAULT 4096

static const char *type_name(enum json_spec_type t)
{
        switch (t) {
        case JS_STRING:
        case JS_CHOICE:
                return "a string";
        case JS_BOOL:
                return "true or false";
        case JS_INT:
                return "an integer";
        case JS_STRING_ARRAY:
                return "an array of strings";
        case JS_ANY:
        default:
                return "a value";
        }
}

/* The length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence. */
static size_t utf8_complete_prefix(const char *s, size_t n)
{
        size_t k = 0; /* continuation bytes at the end */
        while (k < n && k < 4 && ((unsigned char)s[n - 1 - k] & 0xc0) == 0x80)
                k++;
        if (k == n)
                return 0;
        unsigned char lead = (unsigned char)s[n - 1 - k];
        size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
        return need == k + 1 ? n : n - 1 - k;
}

static enum problem_code bad_code(const struct json_spec *s)
{
        return s->invalid_code ? s->invalid_code : PROBLEM_INVALID_VALUE;
}

static int dispatch_one(const struct json_spec *s, json_t *v, const char *field, void *out,
                        struct problem *reterr)
{
        void *dst = (char *)out + s->offset;

        if (json_is_null(v)) {
                if (!(s->flags & JS_NULLABLE))
                        return problem_set(reterr, bad_code(s), field, "%s must be %s, not null",
                                           s->name, type_name(s->type));
                switch (s->type) {
                case JS_STRING:
                case JS_CHOICE:
                        *(const char **)dst = NULL;
                        break;
                case JS_STRING_ARRAY:
                case JS_ANY:
                        *(json_t **)dst = NULL;
                        break;
                default:
                        break;
                }
                return 0;
        }

        switch (s->type) {
        case JS_STRING:
        case JS_CHOICE: {
                if (!json_is_string(v))
                        return problem_set(reterr, bad_code(s), field, "%s must be %s", s->name,
                                           type_name(s->type));
                const char *str = json_string_value(v);
                size_t len = json_string_length(v);
                size_t max = s->max > 0 ? (size_t)s->max : STRING_MAX_DEFAULT;
                if (len > max)
                        return problem_set(reterr, bad_code(s), field,
                                           "%s is longer than %zu bytes", s->name, max);
                if (s->type == JS_CHOICE) {
                        size_t i;
                        for (i = 0; s->choices[i]; i++)
                                if (streq(s->choices[i], str))
                                        break;
                        if (!s->choices[i]) {
                                char list[256] = "";
                                size_t n = 0;
                                for (size_t j = 0; s->choices[j]; j++) {
                                        int w = snprintf(list + n, sizeof(list) - n, "%s%s",
                                                         j ? ", " : "", s->choices[j]);
                                        if (w < 0 || (size_t)w >= sizeof(list) - n)
                                                break;
                                        n += (size_t)w;
                                }
                                return problem_set(reterr, bad_code(s), field,
                                                   "%s must be one of: %s", s->name, list);
                        }
                }
                *(const char **)dst = str;
                break;
        }
        case JS_BOOL:
                if (!json_is_boolean(v))
                        return problem_set(reterr, bad_code(s), field, "%s must be %s", s->name,
                                           type_name(s->type));
                *(bool *)dst = json_is_true(v);
                break;
        case JS_INT: {
                if (!json_is_integer(v))
                        return problem_set(reterr, bad_code(s), field, "%s must be %s", s->name,
                                           type_name(s->type));
                json_int_t i = json_integer_value(v);
                if (i < s->min || i > s->max)
                        return problem_set(reterr, bad_code(s), field,
                                           "%s must be between %lld and %lld", s->name,
                                           (long long)s->min, (long long)s->max);
                *(int64_t *)dst = i;
                break;
        }
        case JS_STRING_ARRAY: {
                size_t idx;
                json_t *item;
                if (!json_is_array(v))
                        return problem_set(reterr, bad_code(s), field, "%s must be %s", s->name,
                                           type_name(s->type));
                if (s->max > 0 && json_array_size(v) > (size_t)s->max)
                        return problem_set(reterr, bad_code(s), field,
                                           "%s takes at most %lld items", s->name,
                                           (long long)s->max);
                json_array_foreach (v, idx, item) {
                        if (!json_is_string(item)) {
                                char f[320];
                                if (snprintf(f, sizeof(f), "%s/%zu", field, idx) >= (int)sizeof(f))
                                        f[0] = 0;
                                return problem_set(reterr, bad_code(s), f,
                                                   "%s must hold only strings", s->name);
                        }
                }
                *(json_t **)dst = v;
                break;
        }
        case JS_ANY:
                *(json_t **)dst = v;
                break;
        }
        if (s->check)
                return s->check(s, v, field, reterr);
        return 0;
}

/* An RFC 3339 date-time ("2026-11-22T10:00:00Z", "...:00.000+01:00") as seconds since the epoch
 * and nanoseconds; false when s is not one. */
static bool rfc3339_parse(const char *s, int64_t *sec, long *nsec)
{
        struct tm tm = { 0 };
        int n = 0;
        if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
            n != 19)
                return false;
        const char *p = s + n;
        long frac = 0, scale = 1000000000;
        if (*p == '.') {
                if (!(p[1] >= '0' && p[1] <= '9'))
                        return false;
                for (p++; *p >= '0' && *p <= '9'; p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (*p - '0') * scale;
                        }
        }
        int offset = 0, oh = 0, om = 0;
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
                   n == 5) {
                offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
                p += 6;
        } else {
                return false;
        }
        if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
            tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
                return false;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        *sec = (int64_t)timegm(&tm) - offset;
        *nsec = frac;
        return true;
}

static bool same_value(json_t *a, json_t *b, unsigned flags)
{
        int64_t sa, sb;
        long na, nb;
        if (json_equal(a, b))
                return true;
        if ((flags & JS_CLOCK) && json_is_integer(a) && json_is_integer(b))
                return llabs((long long)json_integer_value(a) - (long long)json_integer_value(b)) <=
                       1;
        return json_is_string(a) && json_is_string(b) &&
               rfc3339_parse(json_string_value(a), &sa, &na) &&
               rfc3339_parse(json_string_value(b), &sb, &nb) && sa == sb && na == nb;
}

int json_check_read_only(json_t *obj, const struct json_spec *spec, json_t *current,
                         const char *prefix, struct problem *reterr)
{
        char field[300];
        if (!current)
                return 0;
        for (size_t i = 0; spec[i].name; i++) {
                json_t *v = json_object_get(obj, spec[i].name);
                if (!(spec[i].flags & JS_READ_ONLY) || !v)
                        continue;
                json_t *now = json_object_get(current, spec[i].name);
                if (now && same_value(v, now, spec[i].flags))
                        continue;
                snprintf(field, sizeof(field), "%s/%s", prefix, spec[i].name);
                _cleanup_free_ char *want = now ? json_dumps(now, JSON_ENCODE_ANY) : NULL;
                return problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                                   "%s is read-only: leave it out, or send the current value (%s)",
                                   spec[i].name, want ? want : "none");
        }
        return 0;
}

void json_copy_read_only(json_t *from, const struct json_spec *spec, json_t *to)
{
        for (size_t i = 0; spec[i].name; i++) {
                json_t *v = json_object_get(from, spec[i].name);
                if ((spec[i].flags & JS_READ_ONLY) && v)
                        json_object_set(to, spec[i].name, v);
        }
}

int json_dispatch(json_t *obj, const struct json_spec *spec, void *out, uint64_t *present,
                  unsigned flags, const char *prefix, struct problem *reterr)
{
        const char *key;
        json_t *value;
        char field[300];
        uint64_t seen = 0;
        int r;

        if (!json_is_object(obj))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, prefix, "expected a JSON object");

        /* Unknown fields first: a typo must not be silently ignored. */
        json_object_foreach (obj, key, value) {
                size_t i;
                for (i = 0; spec[i].name; i++)
                        if (streq(spec[i].name, key))
                                break;
                if (!spec[i].name) {
                        /* A key may hold '/' or '~'; RFC 6901 escapes them. Keep it readable. */
                        char esc[200];
                        size_t n = 0;
                        for (const char *p = key; *p && n < sizeof(esc) - 3; p++) {
                                if (*p == '~' || *p == '/') {
                                        esc[n++] = '~';
                                        esc[n++] = *p == '~' ? '0' : '1';
                                } else if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                                        esc[n++] = '?';
                                } else {
                                        esc[n++] = *p;
                                }
                        }
                        /* Cut short: never in the middle of a UTF-8 character (jansson would
                         * refuse the string and the field would vanish from the reply). */
                        n = utf8_complete_prefix(esc, n);
                        esc[n] = 0;
                        snprintf(field, sizeof(field), "%s/%s", prefix, esc);
                        return problem_set(reterr, PROBLEM_UNKNOWN_FIELD, field,
                                           "unknown field '%s'", esc);
                }
        }

        for (size_t i = 0; spec[i].name; i++) {
                value = json_object_get(obj, spec[i].name);
                /* the field's pointer is made only for a member that is there or missing (a bulk
                 * of 100,000 items spent a third of its validation here) */
                if (!value) {
                        if ((spec[i].flags & JS_REQUIRED) && !(flags & JSON_DISPATCH_PATCH)) {
                                snprintf(field, sizeof(field), "%s/%s", prefix, spec[i].name);
                                return problem_set(reterr, PROBLEM_MISSING_FIELD, field,
                                                   "%s is required", spec[i].name);
                        }
                        continue;
                }
                if (spec[i].flags & JS_READ_ONLY)
                        continue; /* compared by json_check_read_only(), never written */
                if (spec[i].flags & JS_REPLY_ONLY)
                        continue; /* advice of a reply sent back: neither written nor compared */
                snprintf(field, sizeof(field), "%s/%s", prefix, spec[i].name);
                r = dispatch_one(&spec[i], value, field, out, reterr);
                if (r < 0)
                        return r;
                if (i < 64)
                        seen |= UINT64_C(1) << i;
        }
        if (present)
                *present = seen;
        return 0;
}

int json_parse_body(const char *body, size_t len, json_t **ret, struct problem *reterr)
{
        json_error_t err;
        json_t *j;

        if (len == 0)
                return problem_set(reterr, PROBLEM_INVALID_JSON, "",
                                   "the request body is empty; a JSON object is expected");
        /* A UTF-8 byte order mark is not JSON (RFC 8259 section 8.1 lets parsers refuse it). */
        j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
        if (!j) {
                /* jansson quotes the input "near '...'", possibly cut inside a UTF-8 character:
                 * keep the detail plain ASCII. */
                for (char *c = err.text; *c; c++)
                        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                                *c = '?';
                return problem_set(reterr, PROBLEM_INVALID_JSON, "",
                                   "invalid JSON at line %d, column %d: %s", err.line, err.column,
                                   err.text);
        }
        if (!json_is_object(j)) {
                json_decref(j);
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "",
                                   "the request body must be a JSON object");
        }
        *ret = j;
        return 0;
}

/* Where a json_items reader is: before the body's '{', before a member's name, before an item,
 * after an item (',' or ']'), after the member's value (',' or '}'), at the end. */
enum { ITEMS_START, ITEMS_MEMBER, ITEMS_ITEM, ITEMS_NEXT, ITEMS_AFTER, ITEMS_DONE };

void json_items_init(struct json_items *it, const char *body, size_t len, const char *member,
                     const char *what)
{
        *it = (struct json_items){ .body = body, .len = len, .member = member, .what = what };
}

static void items_skip_space(struct json_items *it)
{
        while (it->pos < it->len && (it->body[it->pos] == ' ' || it->body[it->pos] == '\t' ||
                                     it->body[it->pos] == '\n' || it->body[it->pos] == '\r'))
                it->pos++;
}

/* The line and column (1-based, in characters) of byte `at` of the body: counted only when a
 * problem names them. */
static void items_line_column(const struct json_items *it, size_t at, int *line, int *column)
{
        *line = 1;
        *column = 1;
        for (size_t i = 0; i < at && i < it->len; i++) {
                if (it->body[i] == '\n') {
                        ++*line;
                        *column = 1;
                } else if (((unsigned char)it->body[i] & 0xc0) != 0x80) {
                        ++*column;
                }
        }
}

/* invalid_json at a line and column of the body, worded as json_parse_body words it. */
static int items_bad_json_at(struct json_items *it, int line, int column, const char *what,
                             struct problem *reterr)
{
        char safe[JSON_ERROR_TEXT_LENGTH];
        snprintf(safe, sizeof(safe), "%s", what);
        for (char *c = safe; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                        *c = '?';
        it->state = ITEMS_DONE;
        return problem_set(reterr, PROBLEM_INVALID_JSON, "",
                           "invalid JSON at line %d, column %d: %s", line, column, safe);
}

/* invalid_json at the character at byte `at`. */
static int items_bad_json(struct json_items *it, size_t at, const char *what,
                          struct problem *reterr)
{
        int line, column;
        items_line_column(it, at, &line, &column);
        return items_bad_json_at(it, line, column, what, reterr);
}

/* One JSON value at pos (jansson stops after it: its error position is what it read). */
static int items_value(struct json_items *it, json_t **ret, struct problem *reterr)
{
        json_error_t err;
        json_t *v =
            json_loadb(it->body + it->pos, it->len - it->pos,
                       JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &err);
        if (!v) {
                /* jansson counts from where the value began */
                int line, column;
                items_line_column(it, it->pos, &line, &column);
                if (err.line <= 1)
                        column += (err.column > 0 ? err.column : 1) - 1;
                else
                        column = err.column;
                return items_bad_json_at(it, line + (err.line > 1 ? err.line - 1 : 0), column,
                                         err.text, reterr);
        }
        it->pos += (size_t)err.position;
        *ret = v;
        return 0;
}

size_t json_items_peek(struct json_items *it, size_t *off)
{
        if (it->state != ITEMS_ITEM)
                return 0;
        items_skip_space(it);
        const char *s = it->body + it->pos;
        size_t n = it->len - it->pos, depth = 0;
        if (!n || s[0] != '{')
                return 0;
        bool in_string = false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"') {
                        in_string = true;
                } else if (c == '{' || c == '[') {
                        depth++;
                } else if ((c == '}' || c == ']') && --depth == 0) {
                        *off = it->pos;
                        return i + 1;
                }
        }
        return 0;
}

void json_items_skip(struct json_items *it, size_t len)
{
        it->pos += len;
        it->count++;
        it->state = ITEMS_NEXT;
}

/* The next byte after white space, which must be one of `want`. */
static int items_expect(struct json_items *it, const char *want, char *got, struct problem *reterr)
{
        items_skip_space(it);
        if (it->pos >= it->len)
                return items_bad_json(it, it->pos, "unexpected end of input", reterr);
        char c = it->body[it->pos];
        if (!strchr(want, c) || !c) {
                char what[64];
                snprintf(what, sizeof(what), "'%s' expected", want);
                return items_bad_json(it, it->pos, what, reterr);
        }
        it->pos++;
        *got = c;
        return 0;
}

/* The member's value is not an array (or there is none): the member named as the field. */
static int items_not_array(struct json_items *it, enum problem_code code, struct problem *reterr)
{
        char field[80];
        snprintf(field, sizeof(field), "/%s", it->member);
        it->state = ITEMS_DONE;
        return problem_set(reterr, code, field, "%s must be %s", it->member, it->what);
}

int json_items_advance(struct json_items *it, struct problem *reterr)
{
        char c = 0;
        int r;
        for (;;) {
                switch (it->state) {
                case ITEMS_START: {
                        if (it->len == 0)
                                return problem_set(reterr, PROBLEM_INVALID_JSON, "",
                                                   "the request body is empty; a JSON object is "
                                                   "expected");
                        /* a raw NUL is never JSON (jansson would skip one after a number) */
                        const char *nul = memchr(it->body, 0, it->len);
                        if (nul)
                                return items_bad_json(it, (size_t)(nul - it->body),
                                                      "a NUL byte is not JSON", reterr);
                        items_skip_space(it);
                        if (it->pos >= it->len || it->body[it->pos] != '{') {
                                /* as json_parse_body: a scalar is bad JSON; an array is JSON,
                                 * but no object (invalid_value) */
                                json_error_t err;
                                json_t *v =
                                    json_loadb(it->body, it->len, JSON_REJECT_DUPLICATES, &err);
                                if (!v)
                                        return items_bad_json_at(it, err.line, err.column, err.text,
                                                                 reterr);
                                json_decref(v);
                                it->state = ITEMS_DONE;
                                return problem_set(reterr, PROBLEM_INVALID_VALUE, "",
                                                   "the request body must be a JSON object");
                        }
                        it->pos++;
                        items_skip_space(it);
                        if (it->pos < it->len && it->body[it->pos] == '}') {
                                it->pos++;
                                goto end;
                        }
                        it->state = ITEMS_MEMBER;
                        break;
                }
                case ITEMS_MEMBER: {
                        items_skip_space(it);
                        if (it->pos >= it->len || it->body[it->pos] != '"')
                                return items_bad_json(it, it->pos, "string expected", reterr);
                        json_t *name = NULL;
                        r = items_value(it, &name, reterr);
                        if (r < 0)
                                return r;
                        if (!streq(json_string_value(name), it->member)) {
                                /* said at the end, once the whole text is known to be JSON */
                                if (!it->unknown[0])
                                        snprintf(it->unknown, sizeof(it->unknown), "%s",
                                                 json_string_value(name)[0]
                                                     ? json_string_value(name)
                                                     : "\"\"");
                                json_decref(name);
                                r = items_expect(it, ":", &c, reterr);
                                json_t *v = NULL;
                                if (r >= 0) {
                                        items_skip_space(it);
                                        r = items_value(it, &v, reterr);
                                }
                                json_decref(v);
                                if (r < 0)
                                        return r;
                                it->state = ITEMS_AFTER;
                                break;
                        }
                        json_decref(name);
                        if (it->seen)
                                return items_bad_json(it, it->pos, "duplicate object key", reterr);
                        it->seen = true;
                        r = items_expect(it, ":", &c, reterr);
                        if (r < 0)
                                return r;
                        items_skip_space(it);
                        if (it->pos >= it->len || it->body[it->pos] != '[') {
                                /* JSON, but no array: the whole text is checked first */
                                json_t *v = NULL;
                                r = items_value(it, &v, reterr);
                                json_decref(v);
                                if (r < 0)
                                        return r;
                                it->state = ITEMS_AFTER;
                                it->wrong = true;
                                break;
                        }
                        it->pos++;
                        items_skip_space(it);
                        if (it->pos < it->len && it->body[it->pos] == ']') {
                                it->pos++;
                                it->state = ITEMS_AFTER;
                                break;
                        }
                        it->state = ITEMS_ITEM;
                        break;
                }
                case ITEMS_NEXT:
                        r = items_expect(it, ",]", &c, reterr);
                        if (r < 0)
                                return r;
                        it->state = c == ']' ? ITEMS_AFTER : ITEMS_ITEM;
                        break;
                case ITEMS_ITEM:
                        items_skip_space(it);
                        return 1;
                case ITEMS_AFTER:
                        r = items_expect(it, ",}", &c, reterr);
                        if (r < 0)
                                return r;
                        if (c == '}')
                                goto end;
                        it->state = ITEMS_MEMBER;
                        break;
                default:
                        return 0;
                }
        }
end:
        items_skip_space(it);
        if (it->pos < it->len)
                return items_bad_json(it, it->pos, "end of file expected", reterr);
        if (it->unknown[0]) {
                it->state = ITEMS_DONE;
                return problem_set(reterr, PROBLEM_UNKNOWN_FIELD, "", "unknown field '%s'",
                                   it->unknown);
        }
        if (!it->seen)
                return items_not_array(it, PROBLEM_MISSING_FIELD, reterr);
        if (it->wrong)
                return items_not_array(it, PROBLEM_INVALID_VALUE, reterr);
        it->state = ITEMS_DONE;
        return 0;
}

int json_items_next(struct json_items *it, json_t **ret, struct problem *reterr)
{
        *ret = NULL;
        int r = json_items_advance(it, reterr);
        if (r <= 0)
                return r;
        it->item_start = it->pos;
        r = items_value(it, ret, reterr);
        if (r < 0)
                return r;
        it->count++;
        it->state = ITEMS_NEXT;
        return 1;
}

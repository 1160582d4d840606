/* policy_map_text.c - TLS policies as a Postfix map source file (policy_map_text.h). Pure; any
 * thread. */
#include "core/policy_map_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/policy_grammar.h"
#include "core/policy_map_read.h"
#include "core/policy_render.h"

#define NOTE_TAG     "#@note "
#define DISABLED_TAG "#@disabled "

static bool is_sep(char c)
{
        return c == ' ' || c == ',' || c == '\t' || c == '\r' || c == '\n';
}

_printf_(3, 4) static int bad_line(struct problem *reterr, size_t line, const char *fmt, ...)
{
        char field[40];
        snprintf(field, sizeof(field), "/lines/%zu", line);
        va_list ap;
        va_start(ap, fmt);
        int r = problem_setv(reterr, PROBLEM_INVALID_VALUE, field, fmt, ap);
        va_end(ap);
        return r;
}

/* The next token of s from *pos as Postfix's mystrtokq(", \t\r\n", "{}") cuts it: separators
 * skipped, then up to the next separator outside braces. 1 and the token, 0 at the end, -EINVAL
 * for an unbalanced brace. */
static int next_token(const char *s, size_t len, size_t *pos, const char **tok, size_t *tok_len)
{
        size_t i = *pos;
        while (i < len && is_sep(s[i]))
                i++;
        if (i >= len)
                return 0;
        size_t start = i;
        int depth = 0;
        for (; i < len && (depth > 0 || !is_sep(s[i])); i++) {
                if (s[i] == '{')
                        depth++;
                else if (s[i] == '}' && --depth < 0)
                        return -EINVAL;
        }
        if (depth != 0)
                return -EINVAL;
        *tok = s + start;
        *tok_len = i - start;
        *pos = i;
        return 1;
}

static void trim(const char **s, size_t *n)
{
        while (*n && is_space((unsigned char)**s)) {
                (*s)++;
                (*n)--;
        }
        while (*n && is_space((unsigned char)(*s)[*n - 1]))
                (*n)--;
}

/* name=value of one attribute token (its `{ name = value }` form: braces off, the blanks around
 * the name and the value off, blanks inside the value one space), name lower-cased. */
static int split_attribute(const char *tok, size_t n, char *name, size_t name_size,
                           struct strbuf *value)
{
        if (n && tok[0] == '{') {
                if (n < 2 || tok[n - 1] != '}')
                        return -EINVAL;
                tok++;
                n -= 2;
        }
        const char *eq = memchr(tok, '=', n);
        if (!eq)
                return -EINVAL;
        const char *nm = tok, *v = eq + 1;
        size_t nl = (size_t)(eq - tok), vl = n - nl - 1;
        trim(&nm, &nl);
        trim(&v, &vl);
        if (nl == 0 || nl >= name_size)
                return -EINVAL;
        for (size_t i = 0; i < nl; i++)
                name[i] = to_lower(nm[i]);
        name[nl] = 0;
        value->len = 0;
        if (value->p)
                value->p[0] = 0;
        for (size_t i = 0; i < vl; i++) {
                bool blank = is_space((unsigned char)v[i]);
                if (blank && i + 1 < vl && is_space((unsigned char)v[i + 1]))
                        continue;
                if (strbuf_add(value, blank ? " " : v + i, 1) < 0)
                        return -ENOMEM;
        }
        if (strbuf_add(value, "", 0) < 0)
                return -ENOMEM;
        return 0;
}

/* Appends the parts of v split on sep to the JSON array a (empty parts dropped, as argv_split
 * does). */
static int split_into(json_t *a, const char *v, char sep)
{
        for (const char *p = v; *p;) {
                const char *e = strchr(p, sep);
                size_t n = e ? (size_t)(e - p) : strlen(p);
                json_t *part = n ? json_stringn(p, n) : NULL;
                if (n && !part)
                        return -EILSEQ; /* not UTF-8 (jansson's check) */
                if (n && json_array_append_new(a, part) < 0)
                        return -ENOMEM;
                p += n + (e ? 1 : 0);
        }
        return 0;
}

/* The attributes that may appear once, and their JSON members. */
static const char *const single[] = { "protocols", "ciphers", "servername",
                                      "tafile",    "exclude", NULL };

/* One map value ("level attr=value ...") into item's members; problems name the line. */
static int parse_value(const char *value, size_t len, json_t *item, size_t line,
                       struct problem *reterr)
{
        const char *tok;
        size_t tl, pos = 0;
        char word[32];
        int k = next_token(value, len, &pos, &tok, &tl);
        if (k <= 0)
                return bad_line(reterr, line, "no security level");
        if (tl >= sizeof(word)) {
                snprintf(word, sizeof(word), "%.*s", (int)sizeof(word) - 4, tok);
                return bad_line(reterr, line, "'%s...' is not a security level", word);
        }
        for (size_t i = 0; i < tl; i++)
                word[i] = to_lower(tok[i]);
        word[tl] = 0;
        json_t *level = json_string(word);
        if (!level)
                return bad_line(reterr, line, "the security level is not UTF-8");
        json_object_set_new(item, "level", level);
        bool fingerprint = streq(word, "fingerprint");
        json_t *match = NULL;
        struct strbuf v = { 0 };
        int r = 0;
        while (r >= 0 && (k = next_token(value, len, &pos, &tok, &tl)) > 0) {
                char name[32];
                r = split_attribute(tok, tl, name, sizeof(name), &v);
                if (r == -ENOMEM)
                        break;
                if (r < 0) {
                        char shown[64];
                        snprintf(shown, sizeof(shown), "%.*s", tl > 60 ? 60 : (int)tl, tok);
                        r = bad_line(reterr, line, "'%s' is not an attribute=value pair", shown);
                        break;
                }
                if (!v.p[0] && !streq(name, "connection_reuse")) {
                        /* Postfix refuses most; protocols= it reads as "every protocol", which
                         * smtptlsd cannot keep (an empty value is its default) */
                        r = bad_line(reterr, line, "'%s' has an empty value", name);
                        break;
                }
                if (streq(name, "match")) {
                        if (!match) {
                                match = json_array();
                                json_object_set_new(item, "match", match);
                        }
                        r = split_into(match, v.p, fingerprint ? '|' : ':');
                        if (r == -EILSEQ)
                                r = bad_line(reterr, line, "the value of match is not UTF-8");
                } else if (streq(name, "connection_reuse")) {
                        /* the last one wins, as in Postfix */
                        if (strcasecmp(v.p, "yes") && strcasecmp(v.p, "no")) {
                                r = bad_line(reterr, line,
                                             "connection_reuse is yes or no, not '%s'", v.p);
                                break;
                        }
                        json_object_set_new(item, "connection_reuse",
                                            json_boolean(!strcasecmp(v.p, "yes")));
                } else {
                        bool known = false;
                        for (size_t i = 0; single[i]; i++)
                                known |= streq(name, single[i]);
                        if (!known) {
                                r = bad_line(reterr, line,
                                             "unknown attribute '%s' (known: match, protocols, "
                                             "ciphers, exclude, servername, tafile, "
                                             "connection_reuse)",
                                             name);
                                break;
                        }
                        if (json_object_get(item, name)) {
                                r = bad_line(reterr, line,
                                             "attribute '%s' is given twice: a policy of "
                                             "smtptlsd has one",
                                             name);
                                break;
                        }
                        if (streq(name, "ciphers")) /* a grade name, in any case to Postfix */
                                for (char *c = v.p; *c; c++)
                                        *c = to_lower(*c);
                        json_t *sv = streq(name, "exclude") ? json_array() : json_string(v.p);
                        if (!sv) {
                                r = bad_line(reterr, line, "the value of %s is not UTF-8", name);
                                break;
                        }
                        json_object_set_new(item, name, sv);
                        if (streq(name, "exclude")) {
                                r = split_into(sv, v.p, ':');
                                if (r == -EILSEQ)
                                        r = bad_line(reterr, line,
                                                     "the value of exclude is not UTF-8");
                        }
                }
        }
        if (r >= 0 && k < 0)
                r = bad_line(reterr, line, "a '{' without its '}' (or the other way)");
        free(v.p);
        if (r == -ENOMEM)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        return r;
}

/* A `#@` line of the file. */
struct directive {
        size_t line;
        bool note;
        const char *text; /* after the tag, to the end of the line */
        size_t len;
};

struct reading {
        policy_map_known_fn known;
        policy_map_item_fn fn;
        void *ctx;
        struct problem *reterr;
        struct directive *d;
        size_t n_d, next_d;
        json_t *note;     /* of the entry to come */
        size_t note_line; /* where that note was */
};

int policy_map_entry_item(const char *key, size_t key_len, const char *value, size_t value_len,
                          size_t line, json_t **ret, struct problem *reterr)
{
        json_t *item = json_object(), *dest = json_stringn(key, key_len);
        *ret = NULL;
        if (item && !dest) {
                json_decref(item);
                return bad_line(reterr, line, "the key is not UTF-8");
        }
        if (!item) {
                json_decref(dest);
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        }
        if (json_object_set_new(item, "destination", dest) < 0) {
                json_decref(item);
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        }
        int r = parse_value(value, value_len, item, line, reterr);
        if (r < 0) {
                json_decref(item);
                return r;
        }
        *ret = item;
        return 0;
}

static int emit(struct reading *rd, const char *key, size_t key_len, const char *value,
                size_t value_len, size_t line, bool enabled, const char *raw, size_t raw_len)
{
        json_t *item = NULL;
        int r = policy_map_entry_item(key, key_len, value, value_len, line, &item, rd->reterr);
        if (r >= 0 && !enabled)
                json_object_set_new(item, "enabled", json_false());
        if (r >= 0 && rd->note)
                json_object_set_new(item, "note", TAKE_PTR(rd->note));
        if (r >= 0)
                return rd->fn(rd->ctx, item, line, raw, raw_len, rd->reterr);
        json_decref(item);
        return r;
}

/* The directives before `line` (all of them: SIZE_MAX), in order. */
static int flush_directives(struct reading *rd, size_t line)
{
        for (; rd->next_d < rd->n_d && rd->d[rd->next_d].line < line; rd->next_d++) {
                const struct directive *d = &rd->d[rd->next_d];
                if (d->note) {
                        if (rd->note) /* two notes: the first has no policy */
                                return bad_line(rd->reterr, rd->note_line,
                                                "a #@note with no policy after it");
                        json_error_t err;
                        json_t *s = json_loadb(d->text, d->len, JSON_DECODE_ANY, &err);
                        if (!json_is_string(s)) {
                                json_decref(s);
                                return bad_line(rd->reterr, d->line,
                                                "a note is one JSON string: #@note \"...\"");
                        }
                        rd->note = s;
                        rd->note_line = d->line;
                        continue;
                }
                /* #@disabled KEY VALUE: the key lower-cased, as postmap does */
                size_t kl = 0;
                while (kl < d->len && !is_space((unsigned char)d->text[kl]))
                        kl++;
                char key[POLICY_DESTINATION_MAX * 4 + 1];
                if (kl == 0 || kl >= sizeof(key))
                        return bad_line(rd->reterr, d->line, "#@disabled KEY VALUE expected");
                for (size_t i = 0; i < kl; i++)
                        key[i] = to_lower(d->text[i]);
                const char *v = d->text + kl;
                size_t vl = d->len - kl;
                trim(&v, &vl);
                int r = emit(rd, key, kl, v, vl, d->line, false, NULL, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int on_entry(void *ctx, const char *key, size_t key_len, const char *value, size_t value_len,
                    size_t line)
{
        struct reading *rd = ctx;
        int r = flush_directives(rd, line);
        if (r < 0)
                return r;
        /* key and value are in one buffer (policy_map_each's line): the bytes from the one to the
         * end of the other make the item, unless a note comes with it */
        const char *raw = rd->note ? NULL : key;
        size_t raw_len = raw ? (size_t)(value + value_len - key) : 0;
        if (raw && rd->known && (r = rd->known(rd->ctx, raw, raw_len, line, rd->reterr)) != 0)
                return r < 0 ? r : 0;
        return emit(rd, key, key_len, value, value_len, line, true, raw, raw_len);
}

int policy_map_text_items(const char *text, size_t len, policy_map_known_fn known,
                          policy_map_item_fn fn, void *ctx, struct problem *reterr)
{
        struct reading rd = { .known = known, .fn = fn, .ctx = ctx, .reterr = reterr };
        size_t cap = 0, lineno = 0;
        int r = 0;
        /* the #@ lines first, with their line numbers (postmap skips them as comments) */
        for (size_t pos = 0; pos < len;) {
                const char *eol = memchr(text + pos, '\n', len - pos);
                size_t end = eol ? (size_t)(eol - text) : len;
                lineno++;
                bool note = end - pos >= strlen(NOTE_TAG) &&
                            !memcmp(text + pos, NOTE_TAG, strlen(NOTE_TAG));
                bool disabled = end - pos >= strlen(DISABLED_TAG) &&
                                !memcmp(text + pos, DISABLED_TAG, strlen(DISABLED_TAG));
                if (note || disabled) {
                        if (rd.n_d == cap) {
                                size_t nc = cap ? 2 * cap : 64;
                                struct directive *nd = realloc(rd.d, nc * sizeof(*nd));
                                if (!nd) {
                                        r = -ENOMEM;
                                        break;
                                }
                                rd.d = nd;
                                cap = nc;
                        }
                        size_t skip = strlen(note ? NOTE_TAG : DISABLED_TAG);
                        size_t l = end - pos - skip;
                        const char *t = text + pos + skip;
                        while (l && (t[l - 1] == '\r' || is_space((unsigned char)t[l - 1])))
                                l--;
                        rd.d[rd.n_d++] = (struct directive){ lineno, note, t, l };
                }
                pos = end + 1;
        }
        if (r < 0) {
                free(rd.d);
                return problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        }
        r = policy_map_each(text, len, on_entry, &rd);
        if (r >= 0)
                r = flush_directives(&rd, SIZE_MAX);
        if (r >= 0 && rd.note)
                r = bad_line(reterr, rd.note_line, "a #@note with no policy after it");
        if (r == -ENOMEM && reterr->code == PROBLEM_NONE)
                problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        json_decref(rd.note);
        free(rd.d);
        return r;
}

int policy_map_text_header(struct strbuf *out, size_t count)
{
        char head[512];
        int n =
            snprintf(head, sizeof(head),
                     "# TLS policies kept by smtptlsd: %zu (GET /api/v1/tls-policies, Accept: "
                     "text/plain).\n"
                     "# A Postfix map source file; PUT it back (Content-Type: text/plain) to "
                     "replace them.\n"
                     "# \"#@disabled KEY VALUE\" is a disabled policy and \"#@note \\\"...\\\"\" "
                     "the note of the next one\n"
                     "# (comments to postmap).\n",
                     count);
        return strbuf_add(out, head, (size_t)n);
}

int policy_map_text_add(struct strbuf *out, const struct policy *p)
{
        _cleanup_free_ char *line = NULL;
        int r = policy_render_entry(p, &line);
        if (r < 0)
                return r;
        if (p->note && p->note[0]) {
                json_t *s = json_string(p->note);
                char *text = s ? json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
                json_decref(s);
                if (!text)
                        return -ENOMEM;
                r = strbuf_add(out, NOTE_TAG, strlen(NOTE_TAG));
                if (r >= 0)
                        r = strbuf_add(out, text, strlen(text));
                if (r >= 0)
                        r = strbuf_add(out, "\n", 1);
                free(text);
                if (r < 0)
                        return r;
        }
        if (!p->enabled && (r = strbuf_add(out, DISABLED_TAG, strlen(DISABLED_TAG))) < 0)
                return r;
        r = strbuf_add(out, line, strlen(line));
        if (r >= 0)
                r = strbuf_add(out, "\n", 1);
        return r;
}

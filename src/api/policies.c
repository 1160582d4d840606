/* policies.c (api) - /api/v1/tls-policies: list (filters, cursor), one destination (GET, PUT,
 * PATCH, DELETE), POST, and the bulk replace CI pipelines push. Bodies are validated here with the
 * same table the worker uses (core/policy.c), so a bad item is refused before any job and named
 * as /items/N/field. HTTP threads. */
#include <malloc.h>
#include <stdlib.h>
#include <sys/random.h>
#include <stdio.h>

#include "api/api.h"
#include "api/guard.h"
#include "app.h"
#include "conf.h"
#include "core/cursor.h"
#include "core/json_spec.h"
#include "core/policy.h"
#include "core/policy_map_text.h"
#include "core/resource.h"
#include "core/string_set.h"
#include "log.h"
#include "metrics.h"
#include "store/store.h"

/* The manager a request acts as (?manager=), and whether it may act on managed rows. */
static int manager_of(struct request *req, char *buf, size_t size, const char **ret,
                      struct problem *reterr)
{
        int r = request_query(req, "manager", buf, size, ret, reterr);
        if (r < 0)
                return r;
        if (*ret && !policy_manager_is_valid(*ret))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "manager",
                                   "manager is a manager name, [a-z0-9][a-z0-9._-]{0,63}");
        if (*ret && req->scope < SCOPE_ADMIN)
                return problem_set_errno(reterr, -EPERM, PROBLEM_FORBIDDEN, "manager",
                                         "acting as a manager needs a token with scope 'admin'");
        return 0;
}

/* The request the worker gets: the normalized policy or patch, and who acts. */
static json_t *job_body(struct request *req, json_t *body, const char *manager)
{
        return json_pack("{s:O, s:s*, s:s}", "policy", body, "manager", manager, "scope",
                         scope_to_string(req->scope));
}

static int policies_map_file(struct request *req, struct problem *reterr);

int api_policies_list(struct request *req, struct problem *reterr)
{
        if (request_prefers_text(req))
                return policies_map_file(req, reterr);
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char q[256], level[16], managed[8], after[CURSOR_MAX], pos[CURSOR_POSITION_MAX + 1];
        int limit, m = -1;
        enum tls_level lv;
        json_t *items = NULL;
        _cleanup_free_ char *next = NULL;
        int r = api_list_limit(req, &limit, reterr);
        if (r < 0)
                return r;
        const char *qv, *lvs, *mv, *av;
        r = request_query(req, "q", q, sizeof(q), &qv, reterr);
        if (r >= 0)
                r = request_query(req, "level", level, sizeof(level), &lvs, reterr);
        if (r >= 0)
                r = request_query(req, "managed", managed, sizeof(managed), &mv, reterr);
        if (r >= 0)
                r = request_query(req, "after", after, sizeof(after), &av, reterr);
        if (r < 0)
                return r;
        if (av) {
                /* the position is a destination as stored (normalized): anything else was
                 * not made here */
                char dest[256];
                struct problem p = { 0 };
                r = cursor_decode(CURSOR_POLICIES, av, pos, sizeof(pos), reterr);
                if (r < 0)
                        return r;
                r = policy_destination_normalize(pos, dest, "", &p);
                problem_done(&p);
                if (r < 0 || !streq(dest, pos))
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "after",
                                           "after is not a valid cursor; use the `next` of the "
                                           "previous page");
                av = pos;
        }
        if (lvs && tls_level_from_string(lvs, &lv) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "level",
                                   "level is one of none, may, encrypt, dane, dane-only, "
                                   "fingerprint, verify, secure");
        if (mv) {
                if (streq(mv, "true"))
                        m = 1;
                else if (streq(mv, "false"))
                        m = 0;
                else
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "managed",
                                           "managed is true or false");
        }
        int64_t version = 0;
        r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_policies_list(c, qv, lvs, m, av, limit, &items, &next, &version, reterr);
        if (r < 0)
                return r;
        /* the tag of the whole collection, whatever the filters and the page */
        char etag[RESOURCE_ETAG_MAX];
        resource_etag(RESOURCE_POLICIES, version, etag);
        reply_header(req, "ETag", "%s", etag);
        reply_header(req, "Vary", "Accept");
        char cursor[CURSOR_MAX];
        bool more = next && cursor_encode(CURSOR_POLICIES, next, cursor, sizeof(cursor)) >= 0;
        return reply_json(req, 200,
                          json_pack("{s:o, s:o}", "items", items, "next",
                                    more ? json_string(cursor) : json_null()));
}

/* The destination in the URL, normalized; a malformed one cannot exist: 404 for reads. */
static int url_destination(struct request *req, char out[static 256], bool for_write,
                           struct problem *reterr)
{
        struct problem p = { 0 };
        int r = policy_destination_normalize(req->params[0], out, "", &p);
        if (r >= 0) {
                problem_done(&p);
                return 0;
        }
        if (for_write) {
                *reterr = p;
                return r;
        }
        problem_done(&p);
        return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                 "no TLS policy for that destination");
}

int api_policy_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char dest[256];
        json_t *j = NULL;
        int64_t version = 0;
        int r = url_destination(req, dest, false, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_policy_get(c, dest, NULL, &j, &version, reterr);
        if (r == -ENOENT)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                         "no TLS policy for '%s'", dest);
        if (r < 0)
                return r;
        char etag[RESOURCE_ETAG_MAX];
        resource_etag(RESOURCE_POLICY, version, etag);
        reply_header(req, "ETag", "%s", etag);
        return reply_json(req, 200, j);
}

/* A PUT or POST that names managed_by: the rule (core/policy.c) against the row as stored now
 * (the worker checks again against the row as it is when the job runs). */
static int check_manager_change(struct request *req, const char *dest, const char *now,
                                struct problem *reterr)
{
        if (req->scope >= SCOPE_ADMIN)
                return 0;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct policy cur = { 0 };
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_policy_get(c, dest, &cur, NULL, NULL, reterr);
        if (r == -ENOENT)
                r = 0; /* a new row: it was unmanaged */
        if (r >= 0)
                r = policy_check_manager_change(cur.managed_by, now, req->scope, "", reterr);
        policy_done(&cur);
        return r;
}

static int write_one(struct request *req, const char *action, bool patch, bool from_url,
                     struct problem *reterr)
{
        char dest[256] = "", mbuf[80];
        const char *manager = NULL;
        struct policy p = { 0 }, merged = { 0 };
        const struct policy *set = &p; /* what the write sets: p, or a patch's merge */
        json_t *body = NULL, *normalized = NULL;
        bool guarded = false, force = false;
        int r = manager_of(req, mbuf, sizeof(mbuf), &manager, reterr);
        if (r >= 0)
                r = guard_wanted(req, &guarded, &force, reterr);
        if (r >= 0 && from_url)
                r = url_destination(req, dest, true, reterr);
        if (r >= 0)
                r = json_parse_body(req->body, req->body_len, &body, reterr);
        if (r >= 0 && !patch) {
                /* the whole policy is known: validate and normalize it now */
                r = policy_apply_json(&p, body, false, from_url ? dest : NULL, "", reterr);
                /* not sent: the worker keeps the row's manager, which is no change */
                if (r >= 0 && json_object_get(body, "managed_by"))
                        r = check_manager_change(req, p.destination, p.managed_by, reterr);
                if (r >= 0) {
                        snprintf(dest, sizeof(dest), "%s", p.destination);
                        normalized = policy_to_json(&p);
                        /* Not sent: the worker keeps the row's manager (a PUT by the manager
                         * must not release its own row by omission). */
                        if (!json_object_get(body, "managed_by"))
                                json_object_del(normalized, "managed_by");
                        /* the worker compares them with the row as it is then */
                        policy_copy_read_only(body, normalized);
                }
        } else if (r >= 0) {
                /* a patch merges into the stored row: check the merge now (the worker merges
                 * again onto the row as it is when the job runs) */
                _cleanup_db_conn_ struct db_conn *c = NULL;
                struct policy cur = { 0 };
                r = db_acquire(req->app->db, &c, reterr);
                if (r >= 0)
                        r = store_policy_get(c, dest, &cur, NULL, NULL, reterr);
                bool if_match = request_header(req, "If-Match") != NULL;
                if (r == -ENOENT && if_match)
                        r = 0; /* a failed precondition (412), which the worker decides */
                else if (r == -ENOENT)
                        r = problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                              "no TLS policy for '%s'; PUT creates one", dest);
                else if (r >= 0) {
                        char was[sizeof(cur.managed_by)];
                        memcpy(was, cur.managed_by, sizeof(was));
                        r = policy_apply_json(&cur, body, true, dest, "", reterr);
                        if (r >= 0)
                                r = policy_check_manager_change(was, cur.managed_by, req->scope, "",
                                                                reterr);
                }
                /* the guard probes what the row becomes */
                merged = cur;
                cur = (struct policy){ 0 };
                set = &merged;
                normalized = json_incref(body);
        }
        if (r >= 0) {
                json_t *jb = job_body(req, normalized, manager);
                if (guarded && guard_level_needs_probe(set->level)) {
                        struct guard *g = guard_new(req, force, action, dest, jb, NULL);
                        r = g ? guard_add(g, set, reterr)
                              : problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                  "out of memory");
                        if (r >= 0)
                                r = guard_run(TAKE_PTR(g), reterr);
                        guard_free(g);
                } else {
                        r = api_submit(req, action, dest, jb, reterr);
                }
                json_decref(jb);
        }
        policy_done(&merged);
        policy_done(&p);
        json_decref(normalized);
        json_decref(body);
        return r;
}

int api_policy_put(struct request *req, struct problem *reterr)
{
        return write_one(req, "policies.put", false, true, reterr);
}

int api_policy_patch(struct request *req, struct problem *reterr)
{
        return write_one(req, "policies.patch", true, true, reterr);
}

int api_policies_post(struct request *req, struct problem *reterr)
{
        return write_one(req, "policies.post", false, false, reterr);
}

int api_policy_delete(struct request *req, struct problem *reterr)
{
        char dest[256], mbuf[80];
        const char *manager = NULL;
        int r = manager_of(req, mbuf, sizeof(mbuf), &manager, reterr);
        if (r >= 0)
                r = url_destination(req, dest, true, reterr);
        if (r < 0)
                return r;
        json_t *jb = job_body(req, json_null(), manager);
        r = api_submit(req, "policies.delete", dest, jb, reterr);
        json_decref(jb);
        return r;
}

/* json_dump_callback into a strbuf. */
static int text_add(const char *s, size_t n, void *data)
{
        return strbuf_add(data, s, n) < 0 ? -1 : 0;
}

/* A normalized item as the job row carries it: the members at their defaults (null, [], "",
 * enabled true) left out, as the database applies them again (store_policies_bulk): a quarter of
 * the text, which PostgreSQL parses into the row and out of it. Keep in step with
 * INCOMING_SELECT in store/policies.c: a member with another default dropped here would come back
 * as NULL. */
static void item_drop_defaults(json_t *n)
{
        for (void *it = json_object_iter(n), *next; it; it = next) {
                const char *key = json_object_iter_key(it);
                json_t *v = json_object_iter_value(it);
                next = json_object_iter_next(n, it); /* before a deletion */
                if (json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0) ||
                    (json_is_string(v) && !json_string_length(v) && streq(key, "note")) ||
                    (json_is_true(v) && streq(key, "enabled")))
                        json_object_del(n, key);
        }
}

/* Parsed items given back to the system while the text grows: every this many. */
#define BULK_TRIM_EVERY 16384

/* TLS policies validated one at a time into the JSON text of their normalized forms: what
 * api_policy_items and the bulk's streamed items share. Destinations are checked against a
 * compact set (a million of them: ~30 MiB, where a JSON object took several times that). */
struct policy_items {
        struct request *req;
        const char *base;
        bool allow_managed;
        struct guard *guard;
        struct strbuf text;
        struct string_set seen;
        size_t n, known;              /* items; those the memo knew */
        struct item_memo_build *memo; /* a bulk's memo and delta being made, or NULL */
};

static int policy_items_init(struct policy_items *pi, struct request *req, size_t body_len,
                             const char *base, bool allow_managed, struct guard *guard,
                             struct problem *reterr)
{
        /* about the body's size (a bound: normalized items leave their defaults out): one
         * allocation, in most cases, and large enough to be a mapping of its own, so it grows
         * without copies (its pages are touched only as it fills) */
        *pi = (struct policy_items){ .req = req,
                                     .base = base,
                                     .allow_managed = allow_managed,
                                     .guard = guard,
                                     .text = { .cap = body_len + body_len / 4 + 64 } };
        if (getrandom(&pi->seen.seed, sizeof(pi->seen.seed), 0) != sizeof(pi->seen.seed))
                pi->seen.seed = now_monotonic_usec();
        if (strbuf_add(&pi->text, "[", 1) < 0)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        return 0;
}

static void policy_items_done(struct policy_items *pi)
{
        free(pi->text.p);
        string_set_done(&pi->seen);
        *pi = (struct policy_items){ 0 };
}

/* The destination of item i (or of the entry at line) that an earlier one (first) had. */
static int duplicate(struct policy_items *pi, const char *dest, size_t i, size_t line, size_t first,
                     struct problem *reterr)
{
        char field[64];
        if (line)
                snprintf(field, sizeof(field), "/lines/%zu/destination", line);
        else
                snprintf(field, sizeof(field), "%s/%zu/destination", pi->base, i);
        return problem_set(reterr, PROBLEM_DUPLICATE_DESTINATION, field,
                           "'%s' appears twice (first at %s/%lu)", dest, line ? "/lines" : pi->base,
                           (unsigned long)first);
}

/* One more item (any JSON value: policy_apply_json refuses what is not a policy); problems name
 * base/N/field, or /lines/LINE/field for an item read from a map file (line > 0). raw and
 * raw_len: the bytes it was read from alone, for the memo (NULL, 0: none). */
static int policy_items_add(struct policy_items *pi, json_t *item, size_t line, const char *raw,
                            size_t raw_len, struct problem *reterr)
{
        struct policy p = { 0 };
        char prefix[48], field[64];
        size_t i = pi->n;
        if (line)
                snprintf(prefix, sizeof(prefix), "/lines/%zu", line);
        else
                snprintf(prefix, sizeof(prefix), "%s/%zu", pi->base, i);
        int r = policy_apply_json(&p, item, false, NULL, prefix, reterr);
        /* a new or replaced row: managed_by needs admin (was "") */
        if (r >= 0)
                r = policy_check_manager_change("", p.managed_by, pi->req->scope, prefix, reterr);
        if (r >= 0 && p.managed_by[0] && !pi->allow_managed) {
                snprintf(field, sizeof(field), "%s/managed_by", prefix);
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                                "bulk replace sets unmanaged rows only");
        }
        if (r >= 0) {
                uint32_t first = 0;
                int k = string_set_add(&pi->seen, p.destination, strlen(p.destination),
                                       (uint32_t)(line ? line : i), &first);
                if (k == 0)
                        r = duplicate(pi, p.destination, i, line, first, reterr);
                else if (k < 0)
                        r = problem_set_errno(reterr, k, PROBLEM_INTERNAL_ERROR, NULL, "%s",
                                              k == -E2BIG ? "too many destinations"
                                                          : "out of memory");
        }
        if (r >= 0 && pi->guard && guard_level_needs_probe(p.level))
                r = guard_add(pi->guard, &p, reterr);
        if (r >= 0) {
                json_t *n = policy_to_json(&p);
                if (n)
                        item_drop_defaults(n);
                size_t norm_off = pi->text.len + (i ? 1 : 0);
                if (!n || (i && strbuf_add(&pi->text, ",", 1) < 0) ||
                    json_dump_callback(n, text_add, &pi->text, JSON_COMPACT) < 0)
                        r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
                json_decref(n);
                size_t was = 0;
                int k = r >= 0 && pi->memo
                            ? item_memo_build_added(pi->memo, raw, raw_len, line ? line : i,
                                                    norm_off, pi->text.len - norm_off,
                                                    p.destination, strlen(p.destination), &was)
                            : 0;
                if (k == -EEXIST)
                        r = duplicate(pi, p.destination, i, line, was, reterr);
                else if (k < 0)
                        r = problem_set_errno(reterr, k, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
                pi->n++;
        }
        policy_done(&p);
        return r;
}

/* The next item when the memo knows its bytes (1: added as the memo has it; 0: read it); line:
 * a map file's entry's. */
static int policy_items_known(struct policy_items *pi, const char *raw, size_t raw_len, size_t line,
                              struct problem *reterr)
{
        const char *dest = NULL;
        size_t first = 0;
        if (!pi->memo)
                return 0;
        int k = item_memo_build_known(pi->memo, raw, raw_len, line ? line : pi->n, &dest, &first);
        if (k == -EEXIST)
                return duplicate(pi, dest, pi->n, line, first, reterr);
        if (k < 0)
                return problem_set_errno(reterr, k, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        pi->n += (size_t)k;
        pi->known += (size_t)k;
        return k;
}

/* The text of every item added: malloc'ed, into *ret. */
static int policy_items_finish(struct policy_items *pi, char **ret, struct problem *reterr)
{
        if (strbuf_add(&pi->text, "]", 1) < 0)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        *ret = TAKE_PTR(pi->text.p);
        return 0;
}

int api_policy_items(struct request *req, json_t *items, size_t body_len, const char *base,
                     bool allow_managed, struct guard *guard, char **ret, struct problem *reterr)
{
        struct policy_items pi;
        json_t *item;
        size_t i;
        int r = policy_items_init(&pi, req, body_len, base, allow_managed, guard, reterr);
        if (r >= 0)
                json_array_foreach (items, i, item) {
                        r = policy_items_add(&pi, item, 0, NULL, 0, reterr);
                        if (r < 0)
                                break;
                        /* validated and copied out: the parsed item goes now */
                        json_array_set_new(items, i, json_null());
                        if ((i + 1) % BULK_TRIM_EVERY == 0)
                                malloc_trim(0);
                }
        if (r >= 0)
                r = policy_items_finish(&pi, ret, reterr);
        policy_items_done(&pi);
        return r;
}

/* A map file's policy (policy_map_text_items' callbacks). */
static int map_item(void *ctx, json_t *item, size_t line, const char *raw, size_t raw_len,
                    struct problem *reterr)
{
        int r = policy_items_add(ctx, item, line, raw, raw_len, reterr);
        json_decref(item);
        return r;
}

static int map_known(void *ctx, const char *raw, size_t raw_len, size_t line,
                     struct problem *reterr)
{
        return policy_items_known(ctx, raw, raw_len, line, reterr);
}

static bool media_is_text(struct request *req)
{
        const char *ct = req->content_type;
        return ct && strncasecmp(ct, "text/plain", 10) == 0 &&
               (ct[10] == 0 || ct[10] == ';' || ct[10] == ' ');
}

/* GET /api/v1/tls-policies with Accept: text/plain: the unmanaged policies (what a bulk replace
 * owns) as a Postfix map source file, which PUT takes back unchanged. */
static int policies_map_file(struct request *req, struct problem *reterr)
{
        static const char *const filters[] = { "q", "level", "managed", "after", "limit" };
        for (size_t i = 0; i < ARRAY_SIZE(filters); i++) {
                char v[8];
                const char *got = NULL;
                struct problem ignore = { 0 };
                int k = request_query(req, filters[i], v, sizeof(v), &got, &ignore);
                problem_done(&ignore);
                if (k != 0)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, filters[i],
                                           "the map file holds every unmanaged policy: %s is "
                                           "for the JSON list",
                                           filters[i]);
        }
        _cleanup_db_conn_ struct db_conn *c = NULL;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int64_t version = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_policies_map_file(c, &text, &len, &version, reterr);
        if (r < 0)
                return r;
        char etag[RESOURCE_ETAG_MAX];
        resource_etag_map(version, etag);
        reply_header(req, "Vary", "Accept");
        return reply_text_tagged(req, "text/plain; charset=utf-8", TAKE_PTR(text), len, etag,
                                 reterr);
}

/* Compares the body's items with those the last bulk applied here kept (core/item_memo.h) when
 * the body is small enough to be kept in turn; else (or for a bulk the probe guards, which may
 * never be applied) drops them: the next bulk could not be compared with this one. */
static int bulk_memo_start(struct request *req, bool probe, struct policy_items *pi,
                           struct item_memo_build *mb, struct problem *reterr)
{
        size_t body_len = req->body_len;
        if (probe || body_len > (size_t)req->app->cfg->bulk_memo_limit ||
            body_len > ITEM_MEMO_BODY_MAX) {
                item_memo_forget(&req->app->bulk_memo);
                return 0;
        }
        struct item_memo *old = item_memo_current(&req->app->bulk_memo);
        int r = item_memo_build_init(mb, old, media_is_text(req) ? ITEM_MEMO_MAP : ITEM_MEMO_JSON,
                                     &pi->text, body_len, pi->seen.seed);
        item_memo_unref(old);
        if (r < 0)
                return problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        pi->memo = mb;
        return 0;
}

/* The JSON body's items into pi, one at a time: an item whose bytes the last bulk had is taken
 * as it was, unparsed (json_items_skip); the others are parsed and checked. Once the query or an
 * item is refused (*refused, the first problem in *refusal), the rest is only read: bad JSON or
 * a bad shape after it is what the client hears, as when the body was parsed whole. */
static int bulk_read_json(struct request *req, struct policy_items *pi, int *refused,
                          struct problem *refusal, struct problem *reterr)
{
        struct json_items it;
        json_items_init(&it, req->body, req->body_len, "items", "an array of TLS policies");
        for (;;) {
                int r = json_items_advance(&it, reterr);
                if (r <= 0)
                        return r;
                size_t off = 0, len = pi->memo ? json_items_peek(&it, &off) : 0;
                if (len && !*refused) {
                        int k = policy_items_known(pi, req->body + off, len, 0, refusal);
                        if (k < 0)
                                *refused = k;
                        if (k) {
                                json_items_skip(&it, len);
                                continue;
                        }
                }
                json_t *item = NULL;
                r = json_items_next(&it, &item, reterr);
                if (r <= 0)
                        return r;
                if (!*refused)
                        *refused = policy_items_add(pi, item, 0, req->body + it.item_start,
                                                    it.pos - it.item_start, refusal);
                json_decref(item);
        }
}

/* PUT /api/v1/tls-policies {"items": [...]}: every item validated (the first bad one named as
 * /items/N/...), duplicates refused, then one job. The body may be bulk_body_limit large (a
 * million items), so it is never one tree: the items are read from the text one at a time
 * (json_items), each validated and appended to the JSON text of the normalized items, and freed;
 * the raw body goes once read, and the job keeps only that text until its row has it. Up to
 * bulk_memo_limit, an item whose bytes the last bulk applied here had is taken as the memo has
 * it, the job carries its delta from that bulk, and its items are kept for the next one
 * (core/item_memo.h); a larger body drops the items kept (they will not be the rows). */
int api_policies_bulk(struct request *req, struct problem *reterr)
{
        struct guard *guard = NULL;
        struct policy_items pi = { 0 };
        struct item_memo_build mb = { 0 };
        struct item_memo_delta *delta = NULL;
        struct problem refusal = { 0 }; /* of the query or the first bad item */
        json_t *jb = NULL;
        _cleanup_free_ char *text = NULL;
        size_t body_len = req->body_len, known = 0;
        uint64_t t0 = now_monotonic_usec(), t1 = 0;
        bool probe = false, force = false;
        int r = 0, refused = guard_wanted(req, &probe, &force, &refusal);
        refused = refused < 0 ? refused : 0;
        if (!refused) {
                /* body.policy is null here and the items in the row (api_submit_items) */
                jb = job_body(req, json_null(), NULL);
                guard =
                    probe ? guard_new(req, force, "policies.bulk", "tls-policies", jb, NULL) : NULL;
                if (!jb || (probe && !guard)) {
                        r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
                        goto out;
                }
                r = policy_items_init(&pi, req, body_len, "/items", false, guard, reterr);
                if (r >= 0)
                        r = bulk_memo_start(req, probe, &pi, &mb, reterr);
                if (r < 0)
                        goto out;
        }
        if (media_is_text(req) && !refused)
                r = policy_map_text_items(req->body, req->body_len, map_known, map_item, &pi,
                                          reterr);
        else if (!media_is_text(req))
                r = bulk_read_json(req, &pi, &refused, &refusal, reterr);
        if (r >= 0 && refused) {
                *reterr = refusal;
                refusal = (struct problem){ 0 };
                r = refused;
        }
        if (r < 0)
                goto out;
        /* the memo takes a copy of the items' text */
        if (pi.memo && (r = item_memo_build_finish(&mb, &delta)) < 0) {
                r = problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
                goto out;
        }
        known = pi.known;
        metrics_count(METRIC_BULK_ITEMS_KNOWN, known);
        metrics_count(METRIC_BULK_ITEMS_READ, pi.n - known);
        r = policy_items_finish(&pi, &text, reterr);
        if (r < 0)
                goto out;
        /* read: the raw body and the set of destinations go before the row is sent */
        free(TAKE_PTR(req->body));
        req->body_len = req->body_cap = 0;
        policy_items_done(&pi);
        malloc_trim(0);
        t1 = now_monotonic_usec();
        if (guard) {
                guard_set_items(guard, &text);
                r = guard_run(TAKE_PTR(guard), reterr);
        } else {
                r = api_submit_bulk(req, "policies.bulk", "tls-policies", jb, &text, &delta,
                                    reterr);
        }
        log_debug("bulk replace of %zu bytes: items read and checked in %.1f ms (%zu known), "
                  "submitted in %.1f ms",
                  body_len, (double)(t1 - t0) / 1000.0, known,
                  (double)(now_monotonic_usec() - t1) / 1000.0);
out:
        problem_done(&refusal);
        json_decref(jb);
        policy_items_done(&pi);
        item_memo_build_done(&mb);
        item_memo_delta_free(delta);
        guard_free(guard);
        return r;
}

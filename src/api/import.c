/* import.c - POST /api/v1/import: moving a live Postfix's TLS policy maps and certificate
 * files in without losing a policy. The maps main.cf lists in smtp_tls_policy_maps are read as
 * Postfix reads them (an indexed map with `postmap -s`, a cdb file directly, a texthash source as
 * postmap would), each entry checked as a policy, and the report says per map what is imported,
 * what is refused and why, and which maps stay. A map is adopted - its entries become policies
 * and this node's main.cf no longer lists it - only when every entry of it can be, the keys
 * smtptlsd renders for each answer the same today, and no map that stays comes before it (a map
 * that stays answers first today; ours would answer first after). What smtptlsd has already
 * wins, as it does now (our map is first). The certificate files main.cf names are recognized or
 * stored unbound. Then one job (policies.import) adds the rows and certificates and records the
 * adopted maps, each only if its file is still the one read; `?dry_run=true` gives the report
 * and the plan (the main.cf and map diffs) and changes nothing. HTTP threads (the reads of the
 * maps are bounded by command_timeout). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api/api.h"
#include "api/import_tls.h"
#include "app.h"
#include "conf.h"
#include "apply/cdb.h"
#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/maincf.h"
#include "apply/postfix.h"
#include "apply/spawn.h"
#include "core/destination.h"
#include "core/policy.h"
#include "core/policy_json.h"
#include "core/policy_map_read.h"
#include "core/policy_map_text.h"
#include "core/string_set.h"
#include "log.h"
#include "store/store.h"

#define MAIN_CF_MAX    (4u << 20)
#define TEXTHASH_MAX   (256u << 20)
#define REFUSED_LISTED 100 /* entries named in the report; the count is whole */

/* One map of smtp_tls_policy_maps, as the report says it. */
struct import_map {
        char *spec;     /* the token, as main.cf has it */
        json_t *items;  /* its importable entries (normalized policies), in order */
        json_t *report; /* {map, type, entries, imported, already, shadowed, refused, action,
                         * reason} */
        bool keep;      /* not adopted */
        char digest[POSTMAP_DIGEST_MAX]; /* of its entries before they were read: the job adopts
                                          * it only if it still holds those (an entry added
                                          * meanwhile would be lost) */
        json_t *ours; /* the destinations smtptlsd answers for already (enabled rows) */
};

struct import {
        struct request *req;
        struct import_map *maps;
        size_t n_maps;
        json_t *refused; /* {map, key, field, detail}, the first REFUSED_LISTED */
        size_t n_refused;
        struct string_set seen; /* destinations of the maps before, first one wins */
        json_t *answers;        /* key -> the policy the maps answer for it today (first map) */
};

static int add_token(void *ctx, const char *token, size_t len)
{
        struct import *im = ctx;
        struct import_map *m = realloc(im->maps, (im->n_maps + 1) * sizeof(*m));
        if (!m)
                return -ENOMEM;
        im->maps = m;
        m = &im->maps[im->n_maps++];
        *m = (struct import_map){ .spec = strndup(token, len), .items = json_array() };
        return m->spec && m->items ? 0 : -ENOMEM;
}

/* How a map is read, by its type: 0 postmap -s, 1 the cdb file, 2 the source text; -1 it
 * cannot be listed (a dynamic map: socketmap, a database, regexp, ...). */
static int map_kind(const char *type)
{
        if (streq(type, "hash") || streq(type, "btree") || streq(type, "lmdb"))
                return 0;
        if (streq(type, "cdb"))
                return 1;
        if (streq(type, "texthash"))
                return 2;
        return -1;
}

static void map_keep(struct import_map *m, const char *reason)
{
        m->keep = true;
        json_object_set_new(m->report, "action", json_string("keep"));
        if (!json_object_get(m->report, "reason"))
                json_object_set_new(m->report, "reason", json_string(reason));
}

static void count(json_t *report, const char *what)
{
        json_object_set_new(report, what,
                            json_integer(json_integer_value(json_object_get(report, what)) + 1));
}

struct entry_ctx {
        struct import *im;
        struct import_map *m;
};

/* One entry of the map: a policy (kept in m->items), shadowed by an earlier map, or refused. */
static int on_entry(void *ctx, const char *key, size_t key_len, const char *value, size_t value_len,
                    size_t line)
{
        struct entry_ctx *e = ctx;
        struct import_map *m = e->m;
        struct problem p = { 0 };
        json_t *item = NULL;
        struct policy pol = { 0 };
        count(m->report, "entries");
        int r = policy_map_entry_item(key, key_len, value, value_len, line, &item, &p);
        if (r >= 0)
                r = policy_apply_json(&pol, item, false, NULL, "", &p);
        if (r >= 0) {
                /* the key must be one smtptlsd renders for the policy, or it would answer no
                 * more once the map is adopted ("example.com." is kept as "example.com") */
                char ukey[DESTINATION_UKEY_MAX + 1] = "";
                (void)destination_unicode_key(pol.destination, ukey);
                bool same_key = (strlen(pol.destination) == key_len &&
                                 !memcmp(pol.destination, key, key_len)) ||
                                (strlen(ukey) == key_len && !memcmp(ukey, key, key_len));
                if (!same_key) {
                        problem_set(&p, PROBLEM_INVALID_VALUE, "/destination",
                                    "smtptlsd keeps this destination as '%s': the key itself would "
                                    "answer no more",
                                    pol.destination);
                        r = -EINVAL;
                }
        }
        if (r >= 0) {
                /* what Postfix answers for this key today, if no earlier map has it */
                _cleanup_free_ char *k0 = strndup(key, key_len);
                json_t *answer = policy_to_json(&pol);
                if (!k0 || !answer) {
                        json_decref(answer);
                        policy_done(&pol);
                        json_decref(item);
                        return -ENOMEM;
                }
                if (!json_object_get(e->im->answers, k0))
                        json_object_set_new(e->im->answers, k0, answer);
                else
                        json_decref(answer);
                uint32_t first = 0;
                int k = string_set_add(&e->im->seen, pol.destination, strlen(pol.destination), 0,
                                       &first);
                if (k < 0) {
                        policy_done(&pol);
                        json_decref(item);
                        return k;
                }
                if (k == 0) {
                        count(m->report, "shadowed"); /* an earlier map answers for it */
                } else {
                        json_array_append_new(m->items, policy_to_json(&pol));
                }
        } else if (p.code == PROBLEM_INTERNAL_ERROR) {
                r = -ENOMEM;
        } else {
                count(m->report, "refused");
                map_keep(m, "an entry cannot be a policy of smtptlsd (see refused)");
                if (e->im->n_refused++ < REFUSED_LISTED) {
                        /* the problem's field without the /lines/N its reader gave it */
                        const char *f = p.field;
                        if (strncmp(f, "/lines/", 7) == 0)
                                f = strchr(f + 7, '/') ? strchr(f + 7, '/') : "";
                        json_array_append_new(e->im->refused,
                                              json_pack("{s:s, s:s%, s:s, s:s}", "map", m->spec,
                                                        "key", key, key_len, "field", f, "detail",
                                                        p.detail));
                }
                r = 0;
        }
        policy_done(&pol);
        json_decref(item);
        problem_done(&p);
        return r;
}

/* policy_map_each's walk counting keys: -EEXIST at the first key seen twice. */
static int count_key(void *ctx, const char *key, size_t key_len, const char *value,
                     size_t value_len, size_t line)
{
        uint32_t first = 0;
        int k = string_set_add(ctx, key, key_len, (uint32_t)line, &first);
        return k < 0 ? k : k == 0 ? -EEXIST : 0;
}

/* Reads one map's entries into m (the report says what could not be read). */
static int read_map(struct import *im, struct import_map *m, struct problem *reterr)
{
        const struct config *cfg = im->req->app->cfg;
        char type[64] = "";
        const char *colon = strchr(m->spec, ':');
        const char *path = colon ? colon + 1 : "";
        if (colon && (size_t)(colon - m->spec) < sizeof(type))
                snprintf(type, sizeof(type), "%.*s", (int)(colon - m->spec), m->spec);
        m->report = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s}", "map", m->spec, "type",
                              type, "entries", 0, "imported", 0, "already", 0, "shadowed", 0,
                              "refused", 0, "action", "adopt");
        if (!m->report)
                return -ENOMEM;
        int kind = map_kind(type);
        if (strchr(m->spec, '$') || strchr(m->spec, '{')) {
                map_keep(m, "it names a $parameter or a { } group: write it out to import it");
                return 0;
        }
        if (!colon || kind < 0 || path[0] != '/') {
                map_keep(m, kind < 0 ? "a map whose entries cannot be listed (a lookup service, "
                                       "patterns or another type): it stays, after smtptlsd's"
                                     : "not an absolute path");
                return 0;
        }
        /* each map read once: its entries' digest (what the job compares) is of what was read */
        struct entry_ctx e = { im, m };
        int r;
        if (kind == 0) {
                struct spawn_result out = { 0 };
                r = postmap_dump(cfg, type, path, &out);
                if (r >= 0)
                        r = postmap_content_digest_text(out.output, out.output_len, m->digest);
                if (r >= 0)
                        r = policy_map_each(out.output, out.output_len, on_entry, &e);
                else
                        map_keep(m, "postmap -s cannot read it");
                spawn_result_done(&out);
                return r == -EPROTO || r == -ETIMEDOUT ? 0 : r;
        }
        if (kind == 1) {
                char file[PATH_MAX];
                struct policy_map_entry *ent = NULL;
                size_t n = 0;
                if (layout_map_file(m->spec, file, sizeof(file)) < 0 ||
                    postmap_content_digest(cfg, m->spec, m->digest) < 0 ||
                    cdb_read_entries(file, &ent, &n) < 0) {
                        map_keep(m, "its .cdb file cannot be read");
                        return 0;
                }
                r = 0;
                for (size_t i = 0; r >= 0 && i < n; i++)
                        r = on_entry(&e, ent[i].key, strlen(ent[i].key), ent[i].value,
                                     strlen(ent[i].value), i + 1);
                policy_map_entries_free(ent, n);
                return r;
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (fs_read_file(path, TEXTHASH_MAX, &text, &len) < 0 ||
            postmap_content_digest_text(text, len, m->digest) < 0) {
                map_keep(m, "its file cannot be read");
                return 0;
        }
        (void)reterr;
        /* a texthash map with a key twice is no map to Postfix's smtp client (each lookup fails):
         * importing its first entry would change that */
        struct string_set keys = { .seed = im->seen.seed };
        r = policy_map_each(text, len, count_key, &keys);
        bool twice = r == -EEXIST;
        string_set_done(&keys);
        if (twice) {
                map_keep(m, "a key is in it twice: Postfix's smtp client cannot use it as it is");
                return 0;
        }
        if (r < 0)
                return r;
        return policy_map_each(text, len, on_entry, &e);
}

/* An imported policy answers, after, for the keys smtptlsd renders for it: its destination and,
 * internationalized, the other spelling too. Each must be a key the maps answer today with the
 * same policy - else the import would widen a policy to a key that had none (a map with one
 * spelling only, "example.com." for "example.com") or change one (two spellings, two values):
 * refused, the map stays. */
static void same_answers(struct import *im, struct import_map *m)
{
        json_t *keep = json_array(), *it;
        size_t k;
        json_array_foreach (m->items, k, it) {
                const char *dest = json_string_value(json_object_get(it, "destination"));
                char ukey[DESTINATION_UKEY_MAX + 1] = "";
                const char *keys[2] = { dest, NULL };
                if (destination_unicode_key(dest, ukey) > 0)
                        keys[1] = ukey;
                const char *bad = NULL;
                for (size_t i = 0; i < 2 && keys[i] && !bad; i++)
                        if (!json_equal(json_object_get(im->answers, keys[i]), it))
                                bad = keys[i];
                if (!bad) {
                        json_array_append(keep, it);
                        continue;
                }
                count(m->report, "refused");
                map_keep(m, "an entry cannot be a policy of smtptlsd (see refused)");
                if (im->n_refused++ < REFUSED_LISTED) {
                        char detail[640];
                        json_t *today = json_object_get(im->answers, bad);
                        snprintf(detail, sizeof(detail),
                                 "smtptlsd's policy for %s would also answer for '%s', %s: add an "
                                 "entry for '%s' with the same value to the map (or leave the "
                                 "map as it is)",
                                 dest, bad,
                                 today ? "which the maps answer otherwise today"
                                       : "which no map answers today",
                                 bad);
                        json_array_append_new(im->refused,
                                              json_pack("{s:s, s:s, s:s, s:s}", "map", m->spec,
                                                        "key", dest, "field", "/destination",
                                                        "detail", detail));
                }
        }
        json_decref(m->items);
        m->items = keep;
}

/* The destinations smtptlsd has already, among the items of the adoptable maps: an enabled one
 * answers first today and after (already: not imported); a disabled one does not answer today,
 * so the map's entry does: importing it would change that (refused, the map stays). */
static int against_ours(struct import *im, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *dests = json_array();
        for (size_t i = 0; i < im->n_maps; i++) {
                size_t k;
                json_t *it;
                json_array_foreach (im->maps[i].items, k, it)
                        json_array_append(dests, json_object_get(it, "destination"));
        }
        json_t *ours = NULL;
        int r = db_acquire(im->req->app->db, &c, reterr);
        if (r >= 0)
                r = store_policies_enabled_of(c, dests, &ours, reterr);
        json_decref(dests);
        if (r < 0)
                return r;
        for (size_t i = 0; i < im->n_maps; i++) {
                struct import_map *m = &im->maps[i];
                json_t *keep = json_array(), *it;
                size_t k;
                json_array_foreach (m->items, k, it) {
                        json_t *enabled = json_object_get(
                            ours, json_string_value(json_object_get(it, "destination")));
                        if (!enabled) {
                                json_array_append(keep, it);
                        } else if (json_is_true(enabled)) {
                                count(m->report, "already");
                                /* the job checks they are still there: else the key would
                                 * answer no more once the map is dropped */
                                if (!m->ours)
                                        m->ours = json_array();
                                json_array_append(m->ours, json_object_get(it, "destination"));
                        } else {
                                count(m->report, "refused");
                                map_keep(m,
                                         "an entry cannot be a policy of smtptlsd (see refused)");
                                if (im->n_refused++ < REFUSED_LISTED)
                                        json_array_append_new(
                                            im->refused,
                                            json_pack("{s:s, s:O, s:s, s:s}", "map", m->spec, "key",
                                                      json_object_get(it, "destination"), "field",
                                                      "/destination", "detail",
                                                      "smtptlsd has a disabled policy for it: "
                                                      "Postfix takes this map's entry today"));
                        }
                }
                json_decref(m->items);
                m->items = keep;
        }
        json_decref(ours);
        return 0;
}

static void import_done(struct import *im)
{
        for (size_t i = 0; i < im->n_maps; i++) {
                free(im->maps[i].spec);
                json_decref(im->maps[i].ours);
                json_decref(im->maps[i].items);
                json_decref(im->maps[i].report);
        }
        free(im->maps);
        json_decref(im->refused);
        json_decref(im->answers);
        string_set_done(&im->seen);
}

int api_import(struct request *req, struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        struct import im = { .req = req, .refused = json_array(), .answers = json_object() };
        _cleanup_free_ char *main_cf = NULL, *maps = NULL, *items_text = NULL;
        char path[PATH_MAX], ours[PATH_MAX];
        size_t len = 0;
        json_t *report = NULL, *adopt = NULL, *jb = NULL, *all = NULL, *list = NULL;
        json_t *certs = NULL, *store = NULL, *keys = NULL, *settings = NULL, *take = NULL;
        bool take_settings = false;
        char *keys_text = NULL;
        int r;
        r = api_query_flag(req, "settings", &take_settings, reterr);
        if (r < 0)
                goto out;
        if (getrandom(&im.seen.seed, sizeof(im.seen.seed), 0) != sizeof(im.seen.seed))
                im.seen.seed = now_monotonic_usec();
        if (layout_main_cf(cfg, path, sizeof(path)) < 0 ||
            layout_policy_map(cfg, ours, sizeof(ours)) < 0 ||
            fs_read_file(path, MAIN_CF_MAX, &main_cf, &len) < 0) {
                r = problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL, "cannot read %s",
                                      path);
                goto out;
        }
        if (maincf_get(main_cf, len, "smtp_tls_policy_maps", &maps) < 0)
                maps = NULL;
        r = maincf_maps_each(maps, add_token, &im);
        /* Postfix's order: ours (never imported from), then theirs */
        bool stays = false;
        for (size_t i = 0; r >= 0 && i < im.n_maps; i++) {
                struct import_map *m = &im.maps[i];
                if (maincf_maps_names(m->spec, ours)) {
                        m->report = NULL;
                        continue;
                }
                r = read_map(&im, m, reterr);
                if (r >= 0 && stays && !m->keep)
                        map_keep(m, "a map that stays comes before it (it answers first today)");
                stays = stays || (r >= 0 && m->keep);
        }
        for (size_t i = 0; r >= 0 && i < im.n_maps; i++)
                if (im.maps[i].report && !im.maps[i].keep)
                        same_answers(&im, &im.maps[i]);
        if (r >= 0)
                r = against_ours(&im, reterr);
        if (r < 0) {
                if (reterr->code == PROBLEM_NONE)
                        problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL,
                                          "cannot read the policy maps: %s", strerror(-r));
                goto out;
        }
        /* a map that refused an entry after the others were judged: those after it stay too */
        stays = false;
        all = json_array();
        list = json_array();
        adopt = json_array();
        size_t imported = 0, already = 0, kept = 0;
        for (size_t i = 0; i < im.n_maps; i++) {
                struct import_map *m = &im.maps[i];
                if (!m->report)
                        continue;
                if (stays && !m->keep)
                        map_keep(m, "a map that stays comes before it (it answers first today)");
                stays = stays || m->keep;
                already += (size_t)json_integer_value(json_object_get(m->report, "already"));
                if (m->keep) {
                        kept++;
                } else {
                        json_object_set_new(m->report, "imported",
                                            json_integer((json_int_t)json_array_size(m->items)));
                        imported += json_array_size(m->items);
                        json_array_extend(all, m->items);
                        json_array_append_new(
                            adopt,
                            json_pack("{s:s, s:O, s:s, s:o}", "map", m->spec, "entries",
                                      json_object_get(m->report, "entries"), "digest", m->digest,
                                      "ours", m->ours ? json_incref(m->ours) : json_array()));
                }
                json_array_append(list, m->report);
        }
        certs = json_array();
        store = json_array();
        keys = json_object();
        r = import_certs(req, main_cf, len, certs, store, keys, reterr);
        if (r >= 0)
                r = import_settings(req, certs, take_settings, &settings, &take, reterr);
        if (r < 0)
                goto out;
        report = json_pack("{s:o, s:I, s:I, s:I, s:I, s:O, s:O}", "maps", list, "imported",
                           (json_int_t)imported, "already", (json_int_t)already, "kept",
                           (json_int_t)kept, "refused_entries", (json_int_t)im.n_refused, "refused",
                           im.refused, "certificates", certs);
        if (report)
                json_object_set(report, "settings", settings);
        list = NULL;
        items_text = json_dumps(all, JSON_COMPACT);
        jb = json_pack("{s:n, s:O, s:O, s:O, s:s}", "policy", "report", report, "adopt", adopt,
                       "certificates", store, "scope", scope_to_string(req->scope));
        if (jb && take) {
                /* the job writes them only if main.cf is still the one read */
                char hex[65];
                sha256_hex(main_cf, len, hex);
                json_object_set_new(take, "main_cf_sha256", json_string(hex));
                json_object_set(jb, "take_settings", take);
        }
        if (!report || !items_text || !jb) {
                r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                      "out of memory");
                goto out;
        }
        log_info("import: %zu map(s) read, %zu polic%s to import, %zu already kept, %zu map(s) "
                 "stay",
                 im.n_maps, imported, imported == 1 ? "y" : "ies", already, kept);
        if (json_object_size(keys) > 0) {
                /* the private keys travel as a write's secret does (never in the job row) */
                keys_text = json_dumps(keys, JSON_COMPACT);
                if (!keys_text) {
                        r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
                        goto out;
                }
        }
        r = api_submit_all(req, "policies.import", "tls-policies", jb, keys_text, &items_text,
                           reterr);
out:
        if (keys_text) {
                explicit_bzero(keys_text, strlen(keys_text));
                free(keys_text);
        }
        json_decref(keys); /* jansson frees the key strings through the wiping free */
        json_decref(store);
        json_decref(certs);
        json_decref(settings);
        json_decref(take);
        json_decref(jb);
        json_decref(report);
        json_decref(adopt);
        json_decref(all);
        json_decref(list);
        import_done(&im);
        return r;
}

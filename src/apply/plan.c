/* plan.c - the desired state read from the database and the plan rendered from it against the
 * live main.cf: which files an apply writes, whether Postfix must reload, what a STARTTLS probe
 * must then see; and the plan's JSON forms (dry run, drift, warnings). Reads files, writes none.
 * Worker thread, start-up, and the HTTP threads (/status: drift and warnings). */
#include "apply/plan.h"

#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/maincf.h"
#include "apply/map_state.h"
#include "apply/postfix.h"
#include "conf.h"
#include "log.h"
#include "core/map_diff.h"
#include "core/policy.h"
#include "core/policy_render.h"
#include "core/sealed.h"
#include "store/nodes.h"

void reconcile_ca_file(const struct config *cfg, const struct settings *s, char *buf, size_t size)
{
        snprintf(buf, size, "%s",
                 streq(s->outbound_ca, OUTBOUND_CA_SYSTEM) ? cfg->system_ca_file : s->outbound_ca);
}

int desired_load_settings(struct db_conn *c, const char *node, struct desired *d,
                          struct problem *reterr)
{
        *d = (struct desired){ 0 };
        int r = store_settings_load(c, &d->settings, NULL, false, reterr);
        if (r < 0)
                return r;
        /* this node's own binding, if it has one, in place of the settings' */
        char cert[sizeof(d->settings.certificate)], add[sizeof(d->settings.additional_certificate)];
        _Static_assert(sizeof(cert) >= 65 && sizeof(add) >= 65, "a certificate's name fits");
        r = store_node_settings_load(c, node, cert, add, NULL, reterr);
        if (r < 0)
                return r;
        if (r > 0) {
                memcpy(d->settings.certificate, cert, sizeof(cert));
                memcpy(d->settings.additional_certificate, add, sizeof(add));
        }
        const char *names[SETTINGS_CERTS_MAX] = { d->settings.certificate,
                                                  d->settings.additional_certificate };
        for (size_t i = 0; i < SETTINGS_CERTS_MAX && names[i][0]; i++) {
                r = store_cert_by_name(c, names[i], &d->certs[i], reterr);
                if (r == -ENOENT)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND,
                                           i ? "/additional_certificate" : "/certificate",
                                           "certificate '%s' is gone", names[i]);
                if (r < 0)
                        return r;
                d->n_certs = i + 1;
        }
        return store_adopted_maps(c, node, &d->adopted_maps, reterr);
}

/* More changed rows than this and the map is rendered whole: at 100,000 rows a whole build
 * costs about what postmap -i of this many lines does. */
#define MAP_CHANGES_MAX 10000

/* A changed row's block as a change carries it: NULL when it leaves the map (disabled). */
static int change_block(const struct policy *p, char **block)
{
        *block = NULL;
        if (!p->enabled)
                return 0;
        const struct policy *items[] = { p };
        char *text = NULL;
        size_t len = 0;
        int r = policy_map_render(items, 1, &text, &len);
        if (r < 0)
                return r;
        size_t header = strlen(POLICY_MAP_HEADER);
        memmove(text, text + header, len - header + 1);
        *block = text;
        return 0;
}

/* The live map brought up to date: 1 done, 0 when it cannot be (render whole), < 0 on a database
 * error or a row that cannot be rendered. */
static int load_map_changes(const struct config *cfg, struct db_conn *c, struct desired *d,
                            struct problem *reterr)
{
        struct map_base base = { 0 };
        struct policy_changes ch = { 0 };
        int r = map_state_read(cfg, &base);
        if (r <= 0) {
                if (r < 0)
                        log_info("the policy map's record cannot be read (%s): rendering it "
                                 "whole",
                                 strerror(-r));
                return 0;
        }
        r = store_policies_changes(c, base.version, MAP_CHANGES_MAX, &ch, reterr);
        if (r == -E2BIG || r == -ESTALE) {
                map_base_done(&base);
                return 0;
        }
        size_t n = ch.n_rows + ch.n_gone, k = 0;
        struct map_change *changes = r >= 0 ? calloc(n ? n : 1, sizeof(*changes)) : NULL;
        if (r >= 0 && !changes)
                r = -ENOMEM;
        /* rows and deletions, both sorted, into one sorted list */
        for (size_t i = 0, j = 0; r >= 0 && k < n; k++) {
                bool row = j >= ch.n_gone ||
                           (i < ch.n_rows && strcmp(ch.rows[i].destination, ch.gone[j]) < 0);
                char *block = NULL;
                if (row)
                        r = change_block(&ch.rows[i], &block);
                if (r < 0) {
                        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                    "cannot render the policy of %s: %s", ch.rows[i].destination,
                                    strerror(-r));
                        break;
                }
                changes[k] =
                    (struct map_change){ row ? ch.rows[i++].destination : ch.gone[j++], block };
        }
        if (r >= 0) {
                r = map_merge(base.text, base.len, changes, n, &d->map_text, &d->map_len,
                              &d->map_edit);
                if (r == -EINVAL) {
                        log_info("the live policy map is not one smtptlsd rendered: rendering it "
                                 "whole");
                        r = 0;
                } else if (r >= 0) {
                        d->map_version = ch.version;
                        d->map_incremental = true;
                        r = 1;
                }
        }
        for (size_t i = 0; changes && i < k; i++)
                free((char *)changes[i].block);
        free(changes);
        policy_changes_done(&ch);
        map_base_done(&base);
        return r;
}

int desired_load(const struct config *cfg, struct db_conn *c, struct desired *d,
                 struct problem *reterr)
{
        int r = desired_load_settings(c, cfg->node_name, d, reterr);
        if (r < 0)
                return r;
        bool any = false;
        r = store_policies_exist(c, &any, reterr);
        if (r >= 0)
                r = load_map_changes(cfg, c, d, reterr);
        if (r == 0) {
                int64_t rows = 0;
                size_t entries = 0;
                /* the version first: what commits while the map is read is taken again later */
                r = store_policies_map_version(c, &d->map_version, NULL, reterr);
                if (r >= 0)
                        r = store_policies_render(c, &d->map_text, &d->map_len, &entries, &rows,
                                                  reterr);
        }
        if (r < 0)
                return r;
        d->map_managed = d->settings.managed || any;
        return 0;
}

void desired_done(struct desired *d)
{
        for (size_t i = 0; i < d->n_certs; i++)
                cert_row_done(&d->certs[i]);
        d->n_certs = 0;
        if (!d->map_borrowed)
                free(d->map_text);
        d->map_text = NULL;
        map_edit_done(&d->map_edit);
        d->map_incremental = false;
        for (char **m = d->adopted_maps; m && *m; m++)
                free(*m);
        free(d->adopted_maps);
        d->adopted_maps = NULL;
}

void plan_done(struct plan *p)
{
        free(p->main_cf_old);
        free(p->main_cf_new);
        for (size_t i = 0; i < p->n_certs; i++) {
                free(p->certs[i].fullchain_pem);
                free_wiped(p->certs[i].key_pem);
        }
        free(p->map_param);
        free(p->adopted_skip);
        free(p->master_cf_old);
        free(p->master_cf_new);
        *p = (struct plan){ 0 };
}

static bool file_exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0;
}

/* Where a bound certificate's files are (an imported one's version directory, which the apply
 * writes when it does not exist yet; an ACME one's live directory). */
static int plan_one_cert(const struct config *cfg, const struct cert_row *row, const char *field,
                         struct plan_cert *pc, struct problem *reterr)
{
        char dir[PATH_MAX];
        int r = 0;
        pc->field = field;
        snprintf(pc->name, sizeof(pc->name), "%s", row->name);
        snprintf(pc->key_type, sizeof(pc->key_type), "%s", row->key_type);
        snprintf(pc->fingerprint, sizeof(pc->fingerprint), "%s", row->sha256_fingerprint);
        if (streq(row->type, "imported")) {
                r = layout_imported_dir(cfg, row->name, row->sha256_fingerprint, pc->dir,
                                        sizeof(pc->dir));
                if (r >= 0)
                        r = layout_join(pc->dir, "privkey.pem", pc->key_path, sizeof(pc->key_path));
                if (r >= 0)
                        r = layout_join(pc->dir, "fullchain.pem", pc->chain_path,
                                        sizeof(pc->chain_path));
        } else if (streq(row->type, "acme")) {
                snprintf(pc->acme_name, sizeof(pc->acme_name), "%s", row->name);
                r = layout_acme_dir(cfg, row->name, dir, sizeof(dir));
                if (r >= 0)
                        r = layout_join(dir, "privkey.pem", pc->key_path, sizeof(pc->key_path));
                if (r >= 0)
                        r = layout_join(dir, "fullchain.pem", pc->chain_path,
                                        sizeof(pc->chain_path));
        }
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "certificate path too long");
        if (!streq(row->type, "imported"))
                return 0;
        pc->write = !file_exists(pc->key_path) || !file_exists(pc->chain_path);
        if (!pc->write)
                return 0;
        if (asprintf(&pc->fullchain_pem, "%s%s", row->certificate_pem ? row->certificate_pem : "",
                     row->chain_pem ? row->chain_pem : "") < 0) {
                pc->fullchain_pem = NULL;
                return -ENOMEM;
        }
        return cert_row_private_key(row, cfg->kek, &pc->key_pem, reterr);
}

struct listed {
        const char *spec;
        bool found;
};

static int token_is(void *ctx, const char *token, size_t len)
{
        struct listed *l = ctx;
        l->found |= strlen(l->spec) == len && memcmp(l->spec, token, len) == 0;
        return 0;
}

/* The adopted maps to leave out of smtp_tls_policy_maps: all but one that main.cf lists again
 * with another file than the one adopted (configuration management writing the token back, a new
 * map under the old name: its entries were never imported, so it stays listed). */
static int adopted_skip(const struct config *cfg, const struct desired *d, const char *live,
                        const char ***ret)
{
        size_t n = 0, k = 0;
        *ret = NULL;
        for (char **a = d->adopted_maps; a && a[0] && a[1]; a += 2)
                n++;
        if (n == 0)
                return 0;
        const char **skip = calloc(n + 1, sizeof(*skip));
        if (!skip)
                return -ENOMEM;
        for (char **a = d->adopted_maps; a && a[0] && a[1]; a += 2) {
                struct listed l = { a[0], false };
                char now[POSTMAP_DIGEST_MAX] = "";
                (void)maincf_maps_each(live, token_is, &l);
                if (l.found && (postmap_content_digest(cfg, a[0], now) < 0 || !streq(now, a[1])))
                        continue;
                skip[k++] = a[0];
        }
        *ret = skip;
        return 0;
}

int reconcile_plan(const struct config *cfg, const struct desired *d, struct plan *p,
                   struct problem *reterr)
{
        char path[PATH_MAX];
        int r;

        *p = (struct plan){ 0 };
        r = layout_main_cf(cfg, path, sizeof(path));
        if (r >= 0)
                r = fs_read_file(path, LAYOUT_MAIN_CF_MAX, &p->main_cf_old, &p->old_len);
        if (r < 0 && !d->settings.managed) {
                /* Nothing is managed yet, so nothing is read or written: an empty plan. */
                p->main_cf_old = strdup("");
                p->main_cf_new = strdup("");
                return p->main_cf_old && p->main_cf_new ? 0 : -ENOMEM;
        }
        if (r < 0)
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL, "cannot read %s: %s",
                                   path, strerror(-r));

        struct cert_files files[SETTINGS_CERTS_MAX] = { 0 };
        size_t n_files = 0;
        for (size_t i = 0; i < d->n_certs; i++) {
                r = plan_one_cert(cfg, &d->certs[i], i ? "/additional_certificate" : "/certificate",
                                  &p->certs[i], reterr);
                p->n_certs = i + 1;
                if (r < 0)
                        return r;
                p->write_cert = p->write_cert || p->certs[i].write;
                if (p->certs[i].key_path[0])
                        files[n_files++] =
                            (struct cert_files){ p->certs[i].key_path, p->certs[i].chain_path };
        }
        /* a CAfile Postfix cannot read disables TLS in its smtp client: rendered when readable */
        reconcile_ca_file(cfg, &d->settings, p->ca_file, sizeof(p->ca_file));
        const char *ca_file = p->ca_file[0] && access(p->ca_file, R_OK) == 0 ? p->ca_file : NULL;
        p->n_params = settings_render(&d->settings, files, n_files, ca_file, p->chain_value,
                                      sizeof(p->chain_value), p->params);
        /* The administrator's own policy maps (and anything else listed) stay after ours, but
         * for those whose entries were imported (adopted). */
        char map[PATH_MAX], ours[PATH_MAX + 32];
        _cleanup_free_ char *live_maps = NULL;
        r = layout_policy_map(cfg, map, sizeof(map));
        if (r >= 0 &&
            snprintf(ours, sizeof(ours), "%s:%s", cfg->policy_map_type, map) >= (int)sizeof(ours))
                r = -ENAMETOOLONG;
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "policy map path too long");
        if (maincf_get(p->main_cf_old, p->old_len, "smtp_tls_policy_maps", &live_maps) < 0)
                live_maps = NULL;
        /* Still ours while main.cf names our map: the last policy deleted must leave an empty
         * map, not the old one in force. */
        if (!d->map_managed && maincf_maps_names(live_maps, map))
                p->map_managed = true;
        if (d->map_managed || p->map_managed) {
                char index[PATH_MAX + 8];
                if (adopted_skip(cfg, d, live_maps, &p->adopted_skip) < 0 ||
                    maincf_maps_merge(live_maps, ours, map, p->adopted_skip, &p->map_param) < 0)
                        return -ENOMEM;
                p->params[p->n_params++] =
                    (struct maincf_param){ "smtp_tls_policy_maps", p->map_param };
                if (layout_policy_index(cfg, index, sizeof(index)) < 0)
                        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                           "policy map path too long");
                p->map_managed = true;
                p->map_text = d->map_text;
                p->map_len = d->map_len;
                p->map_version = d->map_version;
                p->map_edit = d->map_incremental ? &d->map_edit : NULL;
                p->map_changed =
                    !fs_same_content(map, d->map_text, d->map_len) || !file_exists(index);
        }
        r = maincf_edit(p->main_cf_old, p->old_len, p->params, p->n_params, &p->main_cf_new,
                        &p->new_len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot render main.cf: %s", strerror(-r));
        p->main_cf_changed =
            p->new_len != p->old_len || memcmp(p->main_cf_new, p->main_cf_old, p->new_len) != 0;
        p->reload = p->main_cf_changed;
        /* the enabled submission services, for the check after a reload (whatever reloads) */
        for (int k = 0; d->settings.managed && k < SUBMISSION_KINDS; k++) {
                const struct submission_service *svc = &d->settings.services[k];
                if (svc->managed && svc->enabled) {
                        struct plan_service *ps = &p->services[p->n_services++];
                        ps->kind = (enum submission_kind)k;
                        snprintf(ps->service, sizeof(ps->service), "%s", svc->service);
                }
        }
        if (d->settings.managed) {
                p->expect_starttls = settings_inbound(&d->settings) != MODE_NONE;
                for (size_t i = 0; p->expect_starttls && i < p->n_certs; i++) {
                        size_t o = strlen(p->expect_fingerprint);
                        snprintf(p->expect_fingerprint + o, sizeof(p->expect_fingerprint) - o,
                                 "%s%s", i ? "," : "", p->certs[i].fingerprint);
                }
        }
        return 0;
}

/* The planned parameters whose value differs from main_cf_old's: [{name, <old_key>, <new_key>}]
 * (an empty value and a removed parameter are the same here). */
static json_t *param_changes(const struct plan *p, const char *old_key, const char *new_key)
{
        json_t *changes = json_array();
        for (size_t i = 0; i < p->n_params; i++) {
                char *old = NULL;
                if (maincf_get(p->main_cf_old, p->old_len, p->params[i].name, &old) < 0)
                        old = NULL;
                const char *new = p->params[i].value;
                if (!streq_ptr(old, new) && !(old && !new && !*old))
                        json_array_append_new(
                            changes, json_pack("{s:s, s:o, s:o}", "name", p->params[i].name,
                                               old_key, old ? json_string(old) : json_null(),
                                               new_key, new ? json_string(new) : json_null()));
                free(old);
        }
        return changes;
}

json_t *reconcile_plan_json(const struct config *cfg, const struct plan *p)
{
        json_t *changes = param_changes(p, "old", "new");
        json_t *plan = json_pack("{s:o, s:b, s:b}", "main_cf", changes, "reload", p->reload,
                                 "postmap", p->map_changed);
        char *diff = NULL;
        if (p->map_managed && p->map_changed) {
                char map[PATH_MAX];
                _cleanup_free_ char *live = NULL;
                size_t live_len = 0;
                if (layout_policy_map(cfg, map, sizeof(map)) < 0 ||
                    fs_read_file(map, 1u << 30, &live, &live_len) < 0)
                        live_len = 0;
                diff = map_diff(LAYOUT_POLICY_MAP, live ? live : "", live_len, p->map_text,
                                p->map_len);
        }
        json_object_set_new(plan, "tls_policy_diff", json_string(diff ? diff : ""));
        free(diff);
        if (p->master_cf_new) {
                diff = p->master_cf_changed
                           ? text_diff("master.cf", p->master_cf_old, p->master_old_len,
                                       p->master_cf_new, p->master_new_len)
                           : NULL;
                json_object_set_new(plan, "master_cf_diff", json_string(diff ? diff : ""));
                free(diff);
        }
        return plan;
}

json_t *reconcile_settings_warnings(const struct desired *d, const struct plan *p)
{
        json_t *warnings = json_array();
        _cleanup_free_ char *sasl = NULL;
        /* the administrator's parameter, as written (a boolean; "$name" values are not
         * expanded: then no warning) */
        const char *text = p->main_cf_new ? p->main_cf_new : p->main_cf_old;
        size_t len = p->main_cf_new ? p->new_len : p->old_len;
        bool sasl_on = text && maincf_get(text, len, "smtpd_sasl_auth_enable", &sasl) >= 0 &&
                       strcasecmp(sasl, "yes") == 0;
        settings_state_warnings(&d->settings, sasl_on, warnings);
        return warnings;
}

json_t *reconcile_drift(const struct config *cfg, const struct plan *p)
{
        (void)cfg;
        return param_changes(p, "live", "desired");
}

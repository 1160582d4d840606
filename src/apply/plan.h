/* plan.h - the desired state (settings, bound certificates, the rendered policy map) and the
 * plan: what main.cf becomes against the live one, which files an apply writes, whether Postfix
 * must reload, what a STARTTLS probe must see afterwards; the plan's JSON forms. Reads files,
 * writes none. Worker thread, start-up, and the HTTP threads (/status). */
#pragma once

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>

#include "core/map_merge.h"
#include "core/problem.h"
#include "core/settings.h"
#include "store/store.h"

struct config;

struct desired {
        struct settings settings;
        /* the bound certificates: settings.certificate, then additional_certificate */
        struct cert_row certs[SETTINGS_CERTS_MAX];
        size_t n_certs;
        /* the TLS policy map: managed once settings are, or as soon as a policy exists */
        bool map_managed;
        char *map_text; /* rendered from the enabled rows, sorted */
        size_t map_len;
        bool map_borrowed; /* map_text belongs to someone else: desired_done leaves it */
        /* the version of the policies map_text is at (store_policies_map_version); when
         * map_incremental, map_text is the live map with the rows changed since merged in, and
         * map_edit what that changes in the live index (apply/map_state.h) */
        int64_t map_version;
        bool map_incremental;
        struct map_edit map_edit;
        /* the administrator's maps whose entries this node imported, with a digest of those
         * entries (postmap_content_digest): pairs (spec, digest, ..., NULL), or NULL */
        char **adopted_maps;
};
/* Reads the committed (or, inside the worker's transaction, the pending) desired state of this
 * node (its own certificate binding, if it has one, in place of the settings'). The map: the
 * live one brought up to date with the rows changed since it was rendered, when its record says
 * what it is (apply/map_state.h) and they are few; else rendered whole. */
int desired_load(const struct config *cfg, struct db_conn *c, struct desired *d,
                 struct problem *reterr);
/* The same without the map (settings and the bound certificate), for a reader that has the map
 * of this generation already: it sets map_text (borrowed), map_len, map_managed. */
int desired_load_settings(struct db_conn *c, const char *node, struct desired *d,
                          struct problem *reterr);
void desired_done(struct desired *d);

/* One bound certificate's files. */
struct plan_cert {
        const char *field; /* the settings member that binds it: "/certificate", ... */
        char name[65];
        char key_type[16];
        char fingerprint[96];
        /* an imported certificate whose version directory does not exist yet */
        bool write;
        char dir[PATH_MAX];
        char *fullchain_pem;
        char *key_pem; /* decrypted when sealed; wiped by plan_done */
        char key_path[PATH_MAX], chain_path[PATH_MAX];
        char acme_name[65]; /* the ACME certificate's name; "" for any other type */
};

struct plan {
        char *main_cf_old, *main_cf_new;
        size_t old_len, new_len;
        bool main_cf_changed;
        struct maincf_param params[SETTINGS_PARAMS_MAX];
        size_t n_params;
        char chain_value[SETTINGS_CERTS_MAX * (2 * PATH_MAX + 4)];
        struct plan_cert certs[SETTINGS_CERTS_MAX];
        size_t n_certs;
        bool write_cert;        /* some certs[i].write */
        char ca_file[PATH_MAX]; /* smtp_tls_CAfile's value ("" when none is rendered) */
        bool reload;
        /* the policy map: its text differs from the live one (or the index is missing) */
        bool map_managed;
        bool map_changed;
        const char *map_text;
        size_t map_len;
        int64_t map_version;             /* what the map is at (apply/map_state.h) */
        const struct map_edit *map_edit; /* NULL: build the index whole */
        char *map_param; /* smtp_tls_policy_maps: ours first, then the administrator's */
        /* the adopted maps left out of it: those whose file is still the one adopted
         * (NULL-terminated pointers into the desired state's adopted_maps, or NULL) */
        const char **adopted_skip;
        /* what a STARTTLS probe must see after the reload: each certs[i].fingerprint (with
         * its key type's signature algorithms when there are two); expect_fingerprint joins
         * them with ',' (a renewal that changes one of them needs a reload) */
        bool expect_starttls;
        char expect_fingerprint[SETTINGS_CERTS_MAX * 96];
        /* master.cf (apply/mastercf.h): what the managed submission services make of it, staged
         * by postconf on a copy; master_cf_new NULL when no service is managed */
        char *master_cf_old, *master_cf_new;
        size_t master_old_len, master_new_len;
        bool master_cf_changed;
        int64_t generation; /* the generation an apply of this plan makes (the master.cf marker) */
        /* the enabled services, for the check after the reload */
        struct plan_service {
                enum submission_kind kind;
                char service[SUBMISSION_SERVICE_MAX + 1];
        } services[SUBMISSION_KINDS];
        size_t n_services;
};
void plan_done(struct plan *p);

int reconcile_plan(const struct config *cfg, const struct desired *d, struct plan *p,
                   struct problem *reterr);
/* The plan for a dry run: [{name, old, new}] of main.cf parameters that change, reload, and the
 * unified diff of the policy map. */
json_t *reconcile_plan_json(const struct config *cfg, const struct plan *p);

/* The CA file the settings' outbound_ca names ("system": system_ca_file) into buf. */
void reconcile_ca_file(const struct config *cfg, const struct settings *s, char *buf, size_t size);
/* The warnings the desired settings earn as state (settings_state_warnings), judged against the
 * main.cf the plan renders: for a settings write, its dry run and /status. */
json_t *reconcile_settings_warnings(const struct desired *d, const struct plan *p);
/* Managed parameters whose live value differs from the desired one: [{name, live, desired}]. */
json_t *reconcile_drift(const struct config *cfg, const struct plan *p);

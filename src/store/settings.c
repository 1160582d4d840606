/* settings.c (store) - the settings row, certificates looked up for binding, the generation
 * counter. HTTP threads read; the worker writes inside its transaction. */
#include <stdio.h>

#include "core/cert.h"
#include "core/policy.h"
#include "log.h"
#include "store/store.h"
#include "store/tokens.h"

void cert_row_done(struct cert_row *c)
{
        free(c->certificate_pem);
        free(c->chain_pem);
        if (c->private_key_pem) {
                explicit_bzero(c->private_key_pem, strlen(c->private_key_pem));
                free(c->private_key_pem);
        }
        c->certificate_pem = c->chain_pem = c->private_key_pem = NULL;
}

static enum tls_mode mode_of(const PGresult *res, int col)
{
        enum tls_mode m = MODE_UNSET;
        if (!PQgetisnull(res, 0, col))
                tls_mode_from_string(PQgetvalue(res, 0, col), &m);
        return m;
}

/* clang-format off */
#define SETTINGS_SELECT                                                                            \
        "SELECT s.managed, s.version, s.mode, s.inbound_mode, s.outbound_mode, c.name, "           \
        "s.profile, s.auth_only, s.received_header, s.loglevel, " DB_TS("s.updated_at") ", "          \
        "g.generation, s.outbound_ca, a.name, s.submission_service, s.submission_enabled, "       \
        "s.submissions_service, s.submissions_enabled FROM settings s "                           \
        "LEFT JOIN certificates c ON c.id = s.certificate_id "                                     \
        "LEFT JOIN certificates a ON a.id = s.additional_certificate_id, config_state g"
/* clang-format on */

int store_settings_load(struct db_conn *c, struct settings *s, int64_t *version, bool for_update,
                        struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        for_update ? SETTINGS_SELECT " FOR UPDATE OF s" : SETTINGS_SELECT, 0, NULL);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "no settings row");
        settings_defaults(s);
        s->managed = streq(PQgetvalue(res, 0, 0), "t");
        if (version)
                *version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        tls_mode_from_string(PQgetvalue(res, 0, 2), &s->mode);
        s->inbound_mode = mode_of(res, 3);
        s->outbound_mode = mode_of(res, 4);
        snprintf(s->certificate, sizeof(s->certificate), "%s",
                 PQgetisnull(res, 0, 5) ? "" : PQgetvalue(res, 0, 5));
        tls_profile_from_string(PQgetvalue(res, 0, 6), &s->profile);
        s->auth_only = streq(PQgetvalue(res, 0, 7), "t");
        s->received_header = streq(PQgetvalue(res, 0, 8), "t");
        s->loglevel = atoi(PQgetvalue(res, 0, 9));
        snprintf(s->updated_at, sizeof(s->updated_at), "%s", PQgetvalue(res, 0, 10));
        s->generation = strtoll(PQgetvalue(res, 0, 11), NULL, 10);
        /* a path becomes main.cf's smtp_tls_CAfile: a row written around the API is checked as
         * the API checks it (else the default) */
        const char *ca = PQgetvalue(res, 0, 12);
        if (streq(ca, OUTBOUND_CA_SYSTEM) || outbound_ca_path_is_valid(ca))
                snprintf(s->outbound_ca, sizeof(s->outbound_ca), "%s", ca);
        snprintf(s->additional_certificate, sizeof(s->additional_certificate), "%s",
                 PQgetisnull(res, 0, 13) ? "" : PQgetvalue(res, 0, 13));
        /* a service name goes into master.cf: a row written around the API is checked as the
         * API checks it (else the service is left alone) */
        for (int k = 0; k < SUBMISSION_KINDS; k++) {
                int col = 14 + 2 * k;
                if (PQgetisnull(res, 0, col))
                        continue;
                const char *name = PQgetvalue(res, 0, col);
                if (!submission_service_is_valid(name)) {
                        log_warning("settings row: %s_service refused (not a [host:]port "
                                    "service name); master.cf's entry is left alone",
                                    submission_kind_name((enum submission_kind)k));
                        continue;
                }
                struct submission_service *svc = &s->services[k];
                svc->managed = true;
                svc->enabled = streq(PQgetvalue(res, 0, col + 1), "t");
                snprintf(svc->service, sizeof(svc->service), "%s", name);
        }
        return 0;
}

/* A row read back is checked as an upload was: its name and fingerprint become directory names
 * and main.cf's smtpd_tls_chain_files, so a row written around the API (a dropped constraint, a
 * restored dump, a hand edit) must not smuggle a path or a separator in. The same validators as
 * the API's (name_is_valid) and policies' (policy_fingerprint_normalize); the row is named by id,
 * never by the bytes that failed (they may hold a newline). */
static int cert_row_check(const struct cert_row *row, struct problem *reterr)
{
        static const char *const types[] = { "imported", "acme", "system" };
        char fp[POLICY_FINGERPRINT_MAX];
        struct problem ignore = { 0 };
        const char *what = NULL;
        bool type_ok = false;
        for (size_t i = 0; i < ARRAY_SIZE(types); i++)
                type_ok = type_ok || streq(row->type, types[i]);
        if (!name_is_valid(row->name))
                what = "its name is not a certificate name ([a-z0-9][a-z0-9._-]{0,63})";
        else if (!type_ok)
                what = "its type is not imported, acme or system";
        else if (policy_fingerprint_normalize(row->sha256_fingerprint, fp, "", &ignore) < 0 ||
                 !streq(fp, row->sha256_fingerprint) || strlen(fp) != 95)
                what = "its sha256_fingerprint is not 32 upper-case hex pairs joined by ':'";
        problem_done(&ignore);
        if (!what)
                return 0;
        log_warning("certificates row id %lld refused: %s", (long long)row->id, what);
        return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "/certificate",
                           "the certificates row id %lld in the database is refused: %s",
                           (long long)row->id, what);
}

int store_cert_by_name(struct db_conn *c, const char *name, struct cert_row *row,
                       struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r = db_exec(c, &res, reterr,
                        "SELECT id, name, type, system, certificate_pem, chain_pem, "
                        "private_key_pem, coalesce(sha256_fingerprint, ''), "
                        "coalesce(extract(epoch from not_after)::bigint, 0), "
                        "coalesce(info->'key'->>'type', '') "
                        "FROM certificates WHERE name = $1",
                        1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT;
        *row = (struct cert_row){ 0 };
        row->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(row->name, sizeof(row->name), "%s", PQgetvalue(res, 0, 1));
        snprintf(row->type, sizeof(row->type), "%s", PQgetvalue(res, 0, 2));
        row->system = streq(PQgetvalue(res, 0, 3), "t");
        if (!PQgetisnull(res, 0, 4))
                row->certificate_pem = strdup(PQgetvalue(res, 0, 4));
        if (!PQgetisnull(res, 0, 5))
                row->chain_pem = strdup(PQgetvalue(res, 0, 5));
        if (!PQgetisnull(res, 0, 6))
                row->private_key_pem = strdup(PQgetvalue(res, 0, 6));
        db_wipe_value(res, 0, 6);
        snprintf(row->sha256_fingerprint, sizeof(row->sha256_fingerprint), "%s",
                 PQgetvalue(res, 0, 7));
        row->not_after = strtoll(PQgetvalue(res, 0, 8), NULL, 10);
        snprintf(row->key_type, sizeof(row->key_type), "%s", PQgetvalue(res, 0, 9));
        if (!row->key_type[0] && row->certificate_pem) {
                /* a row without its details (written around the API): read the leaf */
                struct cert_info info = { 0 };
                struct problem ignore = { 0 };
                if (cert_info_from_pem(row->certificate_pem, strlen(row->certificate_pem), &info,
                                       &ignore) >= 0)
                        snprintf(row->key_type, sizeof(row->key_type), "%s", info.key_type);
                cert_info_done(&info);
                problem_done(&ignore);
        }
        /* a value too long for its field is refused, not checked in its cut-down form */
        if (strlen(PQgetvalue(res, 0, 1)) >= sizeof(row->name))
                row->name[0] = 0;
        if (strlen(PQgetvalue(res, 0, 2)) >= sizeof(row->type))
                row->type[0] = 0;
        if (strlen(PQgetvalue(res, 0, 7)) >= sizeof(row->sha256_fingerprint))
                row->sha256_fingerprint[0] = 0;
        r = cert_row_check(row, reterr);
        if (r < 0)
                cert_row_done(row);
        return r;
}

/* The id of the certificate `name` bound at `field` (into idbuf, NULL when name is ""), and its
 * key type. */
static int bound_cert(struct db_conn *c, const char *name, const char *field, char *idbuf,
                      size_t size, const char **id, char key_type[16], struct problem *reterr)
{
        struct cert_row row;
        *id = NULL;
        if (!name[0])
                return 0;
        int r = store_cert_by_name(c, name, &row, reterr);
        if (r == -ENOENT)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_CERTIFICATE_NOT_FOUND, field,
                                         "no certificate named '%s'", name);
        if (r < 0)
                return r;
        bool system = row.system;
        snprintf(key_type, 16, "%s", row.key_type);
        snprintf(idbuf, size, "%lld", (long long)row.id);
        cert_row_done(&row);
        /* Decided by the flag, never by an id (the reference page compared id = 1). */
        if (system)
                return problem_set(reterr, PROBLEM_SYSTEM_CERTIFICATE_REFUSED, field,
                                   "'%s' is the system's self-signed certificate: strict "
                                   "peers refuse it; import a real certificate first",
                                   name);
        *id = idbuf;
        return 0;
}

int store_settings_save(struct db_conn *c, const struct settings *s, struct problem *reterr)
{
        char loglevel[8];
        const char *cert_id = NULL, *additional_id = NULL;
        char idbuf[24], idbuf2[24], type[16] = "", type2[16] = "";
        int r = bound_cert(c, s->certificate, "/certificate", idbuf, sizeof(idbuf), &cert_id, type,
                           reterr);
        if (r >= 0)
                r = bound_cert(c, s->additional_certificate, "/additional_certificate", idbuf2,
                               sizeof(idbuf2), &additional_id, type2, reterr);
        if (r < 0)
                return r;
        /* Postfix keeps one certificate per key type: a second of the same type replaces the
         * first (the last one in smtpd_tls_chain_files wins). */
        if (additional_id && streq(type, type2))
                return problem_set(reterr, PROBLEM_DUPLICATE_KEY_TYPE, "/additional_certificate",
                                   "'%s' has a key of type %s, as certificate '%s' has: Postfix "
                                   "serves one certificate per key type (bind one of another "
                                   "type here, e.g. EC beside RSA)",
                                   s->additional_certificate, type2[0] ? type2 : "unknown",
                                   s->certificate);
        snprintf(loglevel, sizeof(loglevel), "%d", s->loglevel);
        const char *params[] = {
                tls_mode_to_string(s->mode),
                s->inbound_mode == MODE_UNSET ? NULL : tls_mode_to_string(s->inbound_mode),
                s->outbound_mode == MODE_UNSET ? NULL : tls_mode_to_string(s->outbound_mode),
                cert_id,
                tls_profile_to_string(s->profile),
                s->auth_only ? "t" : "f",
                s->received_header ? "t" : "f",
                loglevel,
                s->outbound_ca,
                additional_id,
                s->services[0].managed ? s->services[0].service : NULL,
                s->services[0].enabled ? "t" : "f",
                s->services[1].managed ? s->services[1].service : NULL,
                s->services[1].enabled ? "t" : "f",
        };
        _Static_assert(SUBMISSION_KINDS == 2, "two services, four columns");
        /* Settings that are already these change nothing: not the version (ETag), not
         * updated_at (and the worker then bumps no generation). */
        return db_exec(c, NULL, reterr,
                       "UPDATE settings SET managed = true, version = version + 1, mode = $1, "
                       "inbound_mode = $2, outbound_mode = $3, certificate_id = $4::bigint, "
                       "profile = $5, auth_only = $6, received_header = $7, loglevel = $8, "
                       "outbound_ca = $9, additional_certificate_id = $10::bigint, "
                       "submission_service = $11, submission_enabled = $12, "
                       "submissions_service = $13, submissions_enabled = $14, "
                       "updated_at = now() WHERE (managed, mode, inbound_mode, outbound_mode, "
                       "certificate_id, profile, auth_only, received_header, loglevel, "
                       "outbound_ca, additional_certificate_id, submission_service, "
                       "submission_enabled, submissions_service, submissions_enabled) IS "
                       "DISTINCT FROM (true, $1, $2, $3, $4::bigint, $5, $6::boolean, "
                       "$7::boolean, $8::int, $9, $10::bigint, $11, $12::boolean, $13, "
                       "$14::boolean)",
                       14, params);
}

int store_generation(struct db_conn *c, int64_t *gen, bool for_update, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        for_update ? "SELECT generation FROM config_state FOR UPDATE"
                                   : "SELECT generation FROM config_state",
                        0, NULL);
        if (r < 0)
                return r;
        *gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

int store_collection_version(struct db_conn *c, enum store_collection which, int64_t *version,
                             struct problem *reterr)
{
        static const char *const query[] = {
                [STORE_POLICIES] = "SELECT policies_version FROM config_state",
                [STORE_CERTIFICATES] = "SELECT certificates_version FROM config_state",
        };
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr, query[which], 0, NULL);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "config_state is empty");
        *version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

int store_state_versions(struct db_conn *c, struct state_versions *v, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT s.version, g.policies_version, g.certificates_version "
                        "FROM settings s, config_state g",
                        0, NULL);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "no settings or config_state row");
        v->settings = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        v->policies = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        v->certificates = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        return 0;
}

int store_generation_bump(struct db_conn *c, int64_t *gen, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        /* every node LISTENs (apply/follower.c): the notification leaves with the commit */
        int r = db_exec(c, &res, reterr,
                        "WITH g AS (UPDATE config_state SET generation = generation + 1, "
                        "updated_at = now() RETURNING generation) "
                        "SELECT generation, pg_notify('smtptlsd_generation', generation::text) "
                        "FROM g",
                        0, NULL);
        if (r < 0)
                return r;
        *gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

/* certificates.c (store) - the certificates table: imported rows carry their PEM, ACME and system
 * rows point at files; every row keeps the parsed details (info) so lists need no OpenSSL. The
 * private key column holds the PEM, or its envelope when key_encryption_key_file is configured
 * (sealed.h; the row's name and fingerprint are its additional data). HTTP threads read; the
 * worker writes. */
#include <stdio.h>
#include <time.h>

#include "core/cert.h"
#include "core/sealed.h"
#include "store/store.h"

/* bound by the settings or by a node of its own (node_settings) */
#define CERT_IN_USE                                                                                \
        "(EXISTS (SELECT 1 FROM settings s "                                                       \
        "         WHERE c.id IN (s.certificate_id, s.additional_certificate_id)) "                 \
        " OR EXISTS (SELECT 1 FROM node_settings o "                                               \
        "            WHERE c.id IN (o.certificate_id, o.additional_certificate_id)))"
#define CERT_COLUMNS                                                                               \
        "c.name, c.type, c.system, coalesce(c.info::text, '{}'), c.chain_verified, "               \
        "c.missing, " CERT_IN_USE ", coalesce(extract(epoch from c.not_after)::bigint, 0), "       \
        "(SELECT coalesce(json_agg(n.node ORDER BY n.node), '[]')::text FROM certificate_nodes n " \
        " WHERE n.certificate_id = c.id), c.version, "                                             \
        "(SELECT coalesce(json_agg(json_build_object('node', n.node, 'sha256_fingerprint', "       \
        " nullif(n.sha256_fingerprint, ''), 'not_after', " DB_TS(                                  \
            "n.not_after") ") "                                                                    \
                           " ORDER BY n.node), '[]')::text FROM certificate_nodes n WHERE "        \
                           "n.certificate_id = c.id)"
#define COL_NODES   8  /* an ACME certificate's nodes (JSON array) */
#define COL_VERSION 9  /* the row's version (ETag) */
#define COL_COPIES  10 /* an ACME certificate's copy on each node (JSON array) */
#define N_COLUMNS   11 /* CERT_COLUMNS: a list's collection version comes after them */

static json_t *row_json(const PGresult *res, int i)
{
        json_t *j = json_loads(PQgetvalue(res, i, 3), 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                j = json_object();
        }
        json_object_set_new(j, "name", json_string(PQgetvalue(res, i, 0)));
        json_object_set_new(j, "type", json_string(PQgetvalue(res, i, 1)));
        json_object_set_new(j, "system", json_boolean(streq(PQgetvalue(res, i, 2), "t")));
        json_object_set_new(
            j, "chain_verified",
            PQgetisnull(res, i, 4) ? json_null() : json_boolean(streq(PQgetvalue(res, i, 4), "t")));
        json_object_set_new(j, "missing", json_boolean(streq(PQgetvalue(res, i, 5), "t")));
        json_object_set_new(j, "in_use", json_boolean(streq(PQgetvalue(res, i, 6), "t")));
        if (streq(PQgetvalue(res, i, 1), "acme")) { /* per node: where it is, and what */
                json_object_set_new(j, "nodes", json_loads(PQgetvalue(res, i, COL_NODES), 0, NULL));
                json_object_set_new(j, "copies",
                                    json_loads(PQgetvalue(res, i, COL_COPIES), 0, NULL));
        }
        long long not_after = strtoll(PQgetvalue(res, i, 7), NULL, 10);
        if (not_after) {
                json_object_set_new(j, "days_left",
                                    json_integer(cert_days_left((time_t)not_after, time(NULL))));
        }
        return j;
}

int store_certs_list(struct db_conn *c, const char *q, const char *type, json_t **items,
                     int64_t *version, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        _cleanup_free_ char *pattern = db_like_pattern(q);
        const char *params[] = { pattern, type && *type ? type : NULL };
        /* One statement, so that the collection's version and the items are of one snapshot; the
         * outer join yields one row (of NULLs but the version) when nothing matches. (LIMIT 1:
         * the planner then expects one row of config_state, not 1330, and does not JIT.) */
        int r = db_exec(c, &res, reterr,
                        "WITH page AS (SELECT " CERT_COLUMNS " FROM certificates c "
                        "WHERE ($1::text IS NULL OR c.name ILIKE $1 OR c.subject ILIKE $1 "
                        "       OR array_to_string(c.dns_names, ' ') ILIKE $1) "
                        "AND ($2::text IS NULL OR c.type = $2)) "
                        "SELECT page.*, s.certificates_version "
                        "FROM (SELECT certificates_version FROM config_state LIMIT 1) s "
                        "LEFT JOIN page ON true ORDER BY page.name",
                        2, params);
        int n = 0;
        if (r >= 0)
                r = db_page_rows(res, N_COLUMNS, version, &n, reterr);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < n; i++)
                json_array_append_new(a, row_json(res, i));
        *items = a;
        return 0;
}

int store_cert_get(struct db_conn *c, const char *name, json_t **ret, int64_t *version,
                   struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r = db_exec(c, &res, reterr,
                        "SELECT " CERT_COLUMNS " FROM certificates c WHERE c.name = $1", 1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT;
        *ret = row_json(res, 0);
        if (version)
                *version = strtoll(PQgetvalue(res, 0, COL_VERSION), NULL, 10);
        return 0;
}

int store_cert_get_json(struct db_conn *c, const char *name, json_t **ret, struct problem *reterr)
{
        return store_cert_get(c, name, ret, NULL, reterr);
}

/* The text[] literal of info's DNS names: {"a","b"} with quotes and backslashes escaped. */
static char *dns_array(const struct cert_info *info)
{
        size_t cap = 3;
        for (size_t i = 0; i < info->n_dns_names; i++)
                cap += 2 * strlen(info->dns_names[i]) + 3;
        char *s = malloc(cap), *o = s;
        if (!s)
                return NULL;
        *o++ = '{';
        for (size_t i = 0; i < info->n_dns_names; i++) {
                if (i)
                        *o++ = ',';
                *o++ = '"';
                for (const char *p = info->dns_names[i]; *p; p++) {
                        if (*p == '"' || *p == '\\')
                                *o++ = '\\';
                        *o++ = *p;
                }
                *o++ = '"';
        }
        *o++ = '}';
        *o = 0;
        return s;
}

static int existing_type(struct db_conn *c, const char *name, char type[16], struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r =
            db_exec(c, &res, reterr, "SELECT type FROM certificates WHERE name = $1", 1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT;
        snprintf(type, 16, "%s", PQgetvalue(res, 0, 0));
        return 0;
}

/* The additional data of a certificate's key envelope: it opens in its own row only. */
static void key_context(char *buf, size_t size, const char *name, const char *fingerprint)
{
        snprintf(buf, size, "certificates.private_key_pem:%s:%s", name, fingerprint);
}

int store_key_open(const struct kek *kek, const char *context, const char *stored, const char *what,
                   char **pem, struct problem *reterr)
{
        char id[KEK_ID_SIZE];
        *pem = NULL;
        if (!stored)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s is unusable: its private key is gone", what);
        if (!sealed_is_sealed(stored)) {
                *pem = strdup(stored);
                return *pem ? 0 : -ENOMEM;
        }
        int r = sealed_open(kek, context, stored, pem);
        if (r == -ENOMEM)
                return r;
        if (r == -EKEYREJECTED && sealed_key_id(stored, id) >= 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s is unusable: its private key is encrypted with key %s, and "
                                   "key_encryption_key_file %s",
                                   what, id, kek ? "holds another key" : "is not configured");
        if (r < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s is unusable: its encrypted private key does not decrypt "
                                   "(damaged, or copied from another row)",
                                   what);
        return 0;
}

int cert_row_private_key(const struct cert_row *row, const struct kek *kek, char **pem,
                         struct problem *reterr)
{
        char context[256], what[96];
        key_context(context, sizeof(context), row->name, row->sha256_fingerprint);
        snprintf(what, sizeof(what), "certificate '%s'", row->name);
        return store_key_open(kek, context, row->private_key_pem, what, pem, reterr);
}

int store_certs_seal_keys(struct db_conn *c, const struct kek *kek, int *count,
                          struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char context[256];
        *count = 0;
        int r =
            db_exec(c, &res, reterr,
                    "SELECT name, coalesce(sha256_fingerprint, ''), private_key_pem "
                    "FROM certificates WHERE private_key_pem IS NOT NULL "
                    "AND private_key_pem NOT LIKE '" SEALED_PREFIX "%' ORDER BY name FOR UPDATE",
                    0, NULL);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                _cleanup_free_ char *sealed = NULL;
                const char *name = PQgetvalue(res, i, 0);
                key_context(context, sizeof(context), name, PQgetvalue(res, i, 1));
                r = sealed_seal(kek, context, PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2),
                                &sealed);
                if (r < 0) {
                        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                    "cannot encrypt the private key of '%s'", name);
                        break;
                }
                const char *params[] = { name, sealed };
                r = db_exec(c, NULL, reterr,
                            "UPDATE certificates SET private_key_pem = $2 WHERE name = $1", 2,
                            params);
                if (r >= 0)
                        (*count)++;
        }
        for (int i = 0; res && i < PQntuples(res); i++)
                db_wipe_value(res, i, 2);
        return r;
}

int store_certs_unreadable_keys(struct db_conn *c, const struct kek *kek, json_t **items,
                                struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char id[KEK_ID_SIZE];
        /* the envelopes' headers only: no key material leaves the database for this */
        int r = db_exec(c, &res, reterr,
                        "SELECT name, left(private_key_pem, 64) FROM certificates "
                        "WHERE private_key_pem LIKE '" SEALED_PREFIX "%' ORDER BY name",
                        0, NULL);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                if (sealed_key_id(PQgetvalue(res, i, 1), id) < 0)
                        snprintf(id, sizeof(id), "?");
                else if (kek && streq(id, kek->id))
                        continue;
                json_array_append_new(
                    a, json_pack("{s:s, s:s}", "name", PQgetvalue(res, i, 0), "key_id", id));
        }
        *items = a;
        return 0;
}

int store_cert_put_imported(struct db_conn *c, const char *name, const struct cert_import *imp,
                            const struct kek *kek, bool chain_verified, bool *created,
                            struct problem *reterr)
{
        char type[16], not_after[32];
        int r = existing_type(c, name, type, reterr);
        if (r < 0 && r != -ENOENT)
                return r;
        *created = r == -ENOENT;
        if (!*created && streq(type, "acme"))
                return problem_set_errno(
                    reterr, -EPERM, PROBLEM_ACME_CERTIFICATE, NULL,
                    "'%s' is an ACME certificate: renew it with the ACME client", name);
        if (!*created && streq(type, "system"))
                return problem_set_errno(
                    reterr, -EPERM, PROBLEM_SYSTEM_CERTIFICATE, NULL,
                    "'%s' is the system certificate and cannot be replaced here", name);
        _cleanup_free_ char *dns = dns_array(&imp->info);
        json_t *info = cert_info_to_json(&imp->info, time(NULL));
        json_object_del(info, "days_left");
        _cleanup_free_ char *info_text = json_dumps(info, JSON_COMPACT);
        json_decref(info);
        snprintf(not_after, sizeof(not_after), "%lld", (long long)imp->info.not_after);
        _cleanup_free_ char *sealed = NULL;
        if (kek) {
                char context[256];
                key_context(context, sizeof(context), name, imp->info.sha256_fingerprint);
                if (sealed_seal(kek, context, imp->key_pem, strlen(imp->key_pem), &sealed) < 0)
                        return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "cannot encrypt the private key of '%s'", name);
        }
        const char *params[] = {
                name,
                imp->cert_pem,
                imp->chain_pem,
                sealed ? sealed : imp->key_pem,
                imp->info.sha256_fingerprint,
                not_after,
                imp->info.subject,
                dns,
                info_text,
                chain_verified ? "t" : "f",
        };
        return db_exec(
            c, NULL, reterr,
            "INSERT INTO certificates (name, type, system, certificate_pem, chain_pem, "
            "private_key_pem, sha256_fingerprint, not_after, subject, dns_names, info, "
            "chain_verified) VALUES ($1, 'imported', false, $2, $3, $4, $5, "
            "to_timestamp($6), $7, $8::text[], $9::jsonb, $10) "
            "ON CONFLICT (name) DO UPDATE SET certificate_pem = $2, chain_pem = $3, "
            "private_key_pem = $4, sha256_fingerprint = $5, not_after = to_timestamp($6), "
            "subject = $7, dns_names = $8::text[], info = $9::jsonb, "
            "chain_verified = $10, missing = false, updated_at = now()",
            10, params);
}

int store_cert_put_file_backed(struct db_conn *c, const char *name, const char *type,
                               const struct cert_info *info, bool chain_verified,
                               struct problem *reterr)
{
        char existing[16], not_after[32];
        int r = existing_type(c, name, existing, reterr);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0 && !streq(existing, type))
                return -EEXIST;
        _cleanup_free_ char *dns = dns_array(info);
        json_t *j = cert_info_to_json(info, time(NULL));
        json_object_del(j, "days_left");
        _cleanup_free_ char *info_text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        snprintf(not_after, sizeof(not_after), "%lld", (long long)info->not_after);
        const char *params[] = {
                name,
                type,
                streq(type, "system") ? "t" : "f",
                info->sha256_fingerprint,
                not_after,
                info->subject,
                dns,
                info_text,
                chain_verified ? "t" : "f",
        };
        _cleanup_pgresult_ PGresult *res = NULL;
        /* the fingerprint before: none (added), another (changed) or the same */
        r = db_exec(c, &res, reterr,
                    "WITH old AS (SELECT sha256_fingerprint FROM certificates WHERE name = $1) "
                    "INSERT INTO certificates (name, type, system, sha256_fingerprint, "
                    "not_after, subject, dns_names, info, chain_verified) VALUES ($1, $2, $3, "
                    "$4, to_timestamp($5), $6, $7::text[], $8::jsonb, $9) "
                    "ON CONFLICT (name) DO UPDATE SET sha256_fingerprint = $4, "
                    "not_after = to_timestamp($5), subject = $6, dns_names = $7::text[], "
                    "info = $8::jsonb, chain_verified = $9, missing = false, "
                    "updated_at = CASE WHEN certificates.sha256_fingerprint IS DISTINCT FROM $4 "
                    "THEN now() ELSE certificates.updated_at END "
                    "RETURNING (SELECT sha256_fingerprint FROM old)",
                    9, params);
        if (r < 0)
                return r;
        if (PQgetisnull(res, 0, 0))
                return STORE_CERT_ADDED;
        return streq(PQgetvalue(res, 0, 0), info->sha256_fingerprint) ? 0 : STORE_CERT_CHANGED;
}

int store_cert_set_missing(struct db_conn *c, const char *name, bool missing,
                           struct problem *reterr)
{
        const char *params[] = { name, missing ? "t" : "f" };
        return db_exec(c, NULL, reterr, "UPDATE certificates SET missing = $2 WHERE name = $1", 2,
                       params);
}

int store_cert_names(struct db_conn *c, const char *type, json_t **names, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { type };
        int r = db_exec(c, &res, reterr,
                        "SELECT name FROM certificates WHERE type = $1 ORDER BY name", 1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(a, json_string(PQgetvalue(res, i, 0)));
        *names = a;
        return 0;
}

int store_cert_delete(struct db_conn *c, const char *name, struct problem *reterr)
{
        const char *params[] = { name };
        return db_exec(c, NULL, reterr, "DELETE FROM certificates WHERE name = $1", 1, params);
}

int store_cert_expiries(struct db_conn *c, const char *node, json_t **items, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node };
        /* an ACME certificate: this node's own copy (each node renews its own); one it lacks is
         * not its to watch */
        int r = db_exec(c, &res, reterr,
                        "SELECT c.name, extract(epoch from coalesce(n.not_after, c.not_after))"
                        "::bigint, c.type, " CERT_IN_USE " FROM certificates c "
                        "LEFT JOIN certificate_nodes n ON n.certificate_id = c.id AND n.node = $1 "
                        "WHERE c.not_after IS NOT NULL AND (c.type <> 'acme' OR n.node IS NOT NULL "
                        "OR NOT EXISTS (SELECT 1 FROM certificate_nodes h "
                        "               WHERE h.certificate_id = c.id)) ORDER BY c.name",
                        1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(
                    a,
                    json_pack("{s:s, s:I, s:s, s:b}", "name", PQgetvalue(res, i, 0), "not_after",
                              (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10), "type",
                              PQgetvalue(res, i, 2), "in_use", streq(PQgetvalue(res, i, 3), "t")));
        *items = a;
        return 0;
}

int store_certs_state(struct db_conn *c, const struct kek *kek, bool keys, json_t **items,
                      struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT name, type, coalesce(sha256_fingerprint, ''), certificate_pem, "
                        "chain_pem, CASE WHEN $1::bool THEN private_key_pem END "
                        "FROM certificates ORDER BY name",
                        1, (const char *[]){ keys ? "t" : "f" });
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                const char *type = PQgetvalue(res, i, 1);
                json_t *j = json_pack("{s:s, s:s, s:s}", "name", PQgetvalue(res, i, 0), "type",
                                      type, "sha256_fingerprint", PQgetvalue(res, i, 2));
                json_array_append_new(a, j);
                /* ACME and system certificates follow their files: a reference, not content */
                if (!streq(type, "imported"))
                        continue;
                json_object_set_new(j, "certificate", json_string(PQgetvalue(res, i, 3)));
                json_object_set_new(j, "chain", json_string(PQgetvalue(res, i, 4)));
                if (!keys || PQgetisnull(res, i, 5))
                        continue;
                struct cert_row row = { .private_key_pem = PQgetvalue(res, i, 5) };
                snprintf(row.name, sizeof(row.name), "%s", PQgetvalue(res, i, 0));
                snprintf(row.sha256_fingerprint, sizeof(row.sha256_fingerprint), "%s",
                         PQgetvalue(res, i, 2));
                char *pem = NULL;
                r = cert_row_private_key(&row, kek, &pem, reterr);
                db_wipe_value(res, i, 5);
                if (r >= 0)
                        json_object_set_new(j, "private_key", json_string(pem));
                free_wiped(pem);
        }
        for (int i = 0; i < PQntuples(res); i++)
                db_wipe_value(res, i, 5);
        if (r < 0) {
                json_decref(a);
                return r;
        }
        *items = a;
        return 0;
}

int store_cert_name_by_fingerprint(struct db_conn *c, const char *fingerprint, char *name,
                                   size_t size, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { fingerprint };
        int r = db_exec(c, &res, reterr,
                        "SELECT name FROM certificates WHERE sha256_fingerprint = $1 "
                        "ORDER BY name LIMIT 1",
                        1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return 0;
        snprintf(name, size, "%s", PQgetvalue(res, 0, 0));
        return 1;
}

/* adopted_maps.c - the administrator's policy maps an import adopted (migration 014): which
 * this node no longer lists in smtp_tls_policy_maps, with a digest of their entries. The worker
 * (the import's job, every plan) and the HTTP threads (/status). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy_grammar.h"
#include "store/store.h"

int store_adopted_maps(struct db_conn *c, const char *node, char ***ret, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node };
        *ret = NULL;
        int r =
            db_exec(c, &res, reterr,
                    "SELECT spec, digest FROM adopted_policy_maps WHERE node = $1 ORDER BY spec", 1,
                    params);
        if (r < 0)
                return r;
        int n = PQntuples(res);
        if (n == 0)
                return 0;
        /* spec, digest, spec, digest, ..., NULL */
        char **v = calloc(2 * (size_t)n + 1, sizeof(char *));
        for (int i = 0; v && i < 2 * n; i++)
                if (!(v[i] = strdup(PQgetvalue(res, i / 2, i % 2)))) {
                        strv_free(v, (size_t)i);
                        v = NULL;
                }
        if (!v)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        *ret = v;
        return 0;
}

int store_adopted_maps_add(struct db_conn *c, const char *node, const char *spec,
                           const char *digest, int64_t entries, const char *actor, bool *added,
                           struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char n[24];
        snprintf(n, sizeof(n), "%lld", (long long)entries);
        const char *params[] = { node, spec, digest, n, actor };
        int r = db_exec(c, &res, reterr,
                        "INSERT INTO adopted_policy_maps (node, spec, digest, entries, actor) "
                        "VALUES ($1, $2, $3, $4::int, $5) ON CONFLICT (node, spec) DO UPDATE "
                        "SET digest = excluded.digest, entries = excluded.entries, "
                        "actor = excluded.actor, adopted_at = now() "
                        "WHERE adopted_policy_maps.digest <> excluded.digest",
                        5, params);
        bool new = r >= 0 && strtol(PQcmdTuples(res), NULL, 10) > 0;
        /* what main.cf lists changes with it: a new version of the policies makes the batch a
         * generation (store_state_versions) */
        if (new)
                r = db_exec(
                    c, NULL, reterr,
                    "UPDATE config_state SET policies_version = nextval('resource_version')", 0,
                    NULL);
        if (r >= 0 && added)
                *added = new;
        return r;
}

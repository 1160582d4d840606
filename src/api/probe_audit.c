/* probe_audit.c - the trust anchors, audit rows and metrics every API probe shares (see
 * probe_audit.h). HTTP threads and probe threads. */
#include "api/probe_audit.h"

#include <stdlib.h>

#include "app.h"
#include "conf.h"
#include "log.h"
#include "store/db.h"
#include "store/probes.h"
#include "util.h"

int probe_audit_insert(struct app *app, const char *actor, const char *destination,
                       const char *level, const char *reason, int64_t *id, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = db_acquire(app->db, &c, reterr);
        if (r >= 0)
                r = store_probe_insert(c, app->cfg->node_name, actor, destination, level, reason,
                                       id, reterr);
        return r;
}

void probe_audit_finish(struct app *app, int64_t id, const char *outcome, json_t *report,
                        bool forced)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct problem p = { 0 };
        json_t *rec = report ? json_object_get(report, "recommended") : NULL;
        if (db_acquire(app->db, &c, &p) < 0 ||
            store_probe_finish(c, id, outcome, json_string_value(rec), report, forced, &p) < 0)
                log_warning("probe %lld: cannot record its outcome: %s", (long long)id,
                            p.detail[0] ? p.detail : "database error");
        problem_done(&p);
}

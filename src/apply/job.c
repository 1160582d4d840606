/* job.c - allocation of struct job (see job.h). Any thread. */
#include "apply/job.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/sealed.h"

struct job *job_new(const char *action, const char *target, const char *actor, json_t *request)
{
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        snprintf(j->action, sizeof(j->action), "%s", action);
        snprintf(j->target, sizeof(j->target), "%s", target);
        snprintf(j->actor, sizeof(j->actor), "%s", actor);
        j->request = json_incref(request);
        return j;
}

json_t *job_accepted_json(const struct job *j)
{
        return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:n, s:n, s:b, s:b, s:n, s:s, s:n, "
                         "s:[], s:n, s:n, s:n, s:b}",
                         "id", (json_int_t)j->id, "status", "queued", "actor", j->actor, "action",
                         j->action, "target", j->target, "created_at", j->created_at, "finished_at",
                         "generation", "postmap", false, "reload", false, "error", "output", "",
                         "verified", "warnings", "before", "after", "location", "changed", false);
}

void job_release_slot(struct job *j)
{
        atomic_bool *slot = TAKE_PTR(j->slot);
        if (slot) {
                /* a bulk replace's: what it took (rendering, results) goes back to the system */
                malloc_trim(0);
                atomic_store(slot, false);
        }
}

void job_reset(struct job *j)
{
        problem_reset(&j->problem);
        json_decref(j->result);
        json_decref(j->warnings);
        j->result = j->warnings = NULL;
        free(j->output);
        j->output = NULL;
        j->postmap = j->reloaded = false;
        j->outcome = JOB_REPLACED;
        j->versioned = false;
        j->version = 0;
        j->delta_tag = (struct item_memo_tag){ 0 };
}

void job_set_version(struct job *j, int64_t version)
{
        j->versioned = true;
        j->version = version;
}

void job_complete(struct job *j)
{
        job_release_slot(j); /* before the reply: the client may send its next bulk at once */
        if (j->on_done)
                j->on_done(j, j->on_done_arg);
}

void job_free(struct job *j)
{
        if (!j)
                return;
        job_release_slot(j);
        free(j->items);
        item_memo_delta_free(j->delta);
        json_decref(j->request);
        free_wiped(j->secret);
        json_decref(j->result);
        json_decref(j->warnings);
        problem_done(&j->problem);
        free(j->output);
        free(j);
}

/* action.h - what each kind of job does inside the worker's transaction: one table of actions
 * ({name, run, flags}: apply/action.c) whose rows live beside their resource (action_settings.c,
 * action_certificates.c, action_policies.c, action_state.c). Worker thread only. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/names.h"
#include "core/resource.h"

struct config;
struct db_conn;
struct job;
struct problem;
struct cert_row;
struct settings;

/* What an action may use: the worker's configuration and its connection (inside the batch's
 * transaction, in the job's SAVEPOINT), and where the batch stands. */
struct action_env {
        const struct config *cfg;
        struct db_conn *db;
        int64_t batch_generation; /* the generation before the batch's bump */
        bool batch_dirty;         /* a job before this one in the batch changed something */
};

enum action_flags {
        ACTION_PATCH = 1u << 0,    /* merges onto the current resource (PATCH) */
        ACTION_CREATE = 1u << 1,   /* creates only: an existing resource is refused (POST) */
        ACTION_COUNTS = 1u << 2,   /* its result is counts, kept beside a dry run's plan */
        ACTION_SETTINGS = 1u << 3, /* gets the bound certificates' and modes' warnings */
        ACTION_STATE = 1u << 4,    /* tagged with the generation its batch creates */
};

/* An action's run: the job's change in the database (job->problem on refusal), the resource
 * before and after it (for the audit trail; NULL where there is none) and job->outcome. */
typedef int (*action_run_fn)(const struct action_env *env, struct job *job, unsigned flags,
                             json_t **before, json_t **after);

struct action {
        const char *name; /* jobs.action */
        action_run_fn run;
        unsigned flags;
};

/* The row of `name`, NULL for an action this version does not know. */
const struct action *action_find(const char *name);
/* The table, for tests: *n rows. */
const struct action *action_table(size_t *n);
/* Runs the job's action; an unknown one fails the job (internal_error). */
int action_run(const struct action_env *env, struct job *job, json_t **before, json_t **after);

/* ---- the rows (each in the file of its resource) ---- */
int action_settings_write(const struct action_env *env, struct job *job, unsigned flags,
                          json_t **before, json_t **after);
int action_certificate_put(const struct action_env *env, struct job *job, unsigned flags,
                           json_t **before, json_t **after);
int action_certificate_delete(const struct action_env *env, struct job *job, unsigned flags,
                              json_t **before, json_t **after);
int action_certificates_rescan(const struct action_env *env, struct job *job, unsigned flags,
                               json_t **before, json_t **after);
int action_policy_write(const struct action_env *env, struct job *job, unsigned flags,
                        json_t **before, json_t **after);
int action_policy_delete(const struct action_env *env, struct job *job, unsigned flags,
                         json_t **before, json_t **after);
/* An import (api/import.c): the administrator's map entries added as policies, their maps
 * adopted (no longer listed after ours); the result is the API's report with the counts. */
int action_policies_import(const struct action_env *env, struct job *job, unsigned flags,
                           json_t **before, json_t **after);
int action_policies_bulk(const struct action_env *env, struct job *job, unsigned flags,
                         json_t **before, json_t **after);
int action_node_settings_put(const struct action_env *env, struct job *job, unsigned flags,
                             json_t **before, json_t **after);
int action_node_settings_delete(const struct action_env *env, struct job *job, unsigned flags,
                                json_t **before, json_t **after);
int action_state_put(const struct action_env *env, struct job *job, unsigned flags, json_t **before,
                     json_t **after);

/* ---- shared by the rows ---- */
/* The job's If-Match against its resource of `kind` (job->target names a row) at `version`, or
 * absent (core/resource.c: resource_precondition); job->problem on refusal. */
int action_precondition(struct job *job, enum resource_kind kind, bool exists, int64_t version);
/* The same, reading the version now (a certificate or policy row, or a collection): inside the
 * job's transaction, so that no other write comes between check and change. */
int action_check_if_match(const struct action_env *env, struct job *job, enum resource_kind kind);
/* The scope the request was made with, as recorded (none or unknown counts as the lowest, so a
 * job nobody vouched for cannot do what needs admin). */
enum scope action_scope(const struct job *job);
/* A member of the request's body, as a string (NULL when absent). */
const char *action_body_string(const struct job *job, const char *key);
/* The job wrote `after` (its reply; NULL when it cannot be read back) at `version`, creating it
 * or not. */
void action_wrote(struct job *job, json_t *after, int64_t version, bool created);
/* Sets the current generation into a resource's representation (as a write's reply has it). */
int action_with_generation(const struct action_env *env, struct job *job, json_t *resource);
/* A settings write onto the row loaded for update into *s (settings), an imported certificate
 * validated again and stored, a certificate removed unless it may not be (certificates): used by
 * the whole-state action too. */
int action_settings_store(const struct action_env *env, struct settings *s, json_t *body,
                          bool patch, struct problem *reterr);
int action_cert_store(const struct action_env *env, const char *name, const char *cert,
                      const char *chain, const char *key, bool *created, struct problem *reterr);
int action_cert_remove(const struct action_env *env, const char *name, json_t *cur,
                       struct problem *reterr);
/* The warnings of a settings write that come from its batch's plan (the modes', the bound
 * certificates': expiring, not covering myhostname). */
struct desired;
struct plan;
json_t *action_settings_warnings(const struct config *cfg, const struct desired *d,
                                 const struct plan *p);
/* The effective smtp_tls_fingerprint_digest into *d; NULL when postconf cannot tell. */
struct fingerprint_digest;
const struct fingerprint_digest *action_fingerprint_digest(const struct action_env *env,
                                                           struct fingerprint_digest *d);

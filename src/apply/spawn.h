/* spawn.h - running postfix, postconf and postmap: posix_spawnp with an argv (never a shell),
 * stdin from /dev/null (or a file of the caller's), stdout and stderr captured (together, or apart
 * for a caller that parses stdout), capped, and a hard time bound after which the child's whole
 * process group is killed. The child starts clean: its own process group, no blocked signals,
 * default dispositions, a minimal environment (spawn_environment) and no descriptor but 0, 1 and 2.
 * Worker thread (and start-up); spawn_cancel_all from the main thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPAWN_OUTPUT_MAX (64 * 1024)

struct spawn_result {
        int exit_status; /* exit code, or 128 + signal */
        int timed_out;
        int cancelled; /* killed by spawn_cancel_all */
        char *output;  /* NUL-terminated, at most output_max bytes kept */
        size_t output_len;
        size_t output_max;
        char *errors; /* stderr when captured apart (NUL-terminated, capped), else NULL */
        size_t errors_len;
};

struct spawn_options {
        size_t output_max;      /* 0: SPAWN_OUTPUT_MAX */
        bool stderr_apart;      /* stderr into errors, stdout alone in output */
        const char *stdin_path; /* the child's standard input (NULL: /dev/null) */
};

/* What a thread that spawns is told while its child runs. */
struct spawn_hooks {
        void (*progress)(void *arg); /* about every 100 ms (the worker: its heartbeat) */
        void *arg;
};
/* Sets the hooks of the calling thread's spawns (a copy; NULL: none). Only that thread's: a
 * `postfix status` run by an HTTP thread does not beat the worker's heartbeat. */
void spawn_hooks_set(const struct spawn_hooks *h);
/* A progress hook: stores now_monotonic_usec() into the atomic_uint_fast64_t at clock. */
void spawn_progress_stamp(void *clock);

/* Creates what spawn_cancel_all signals (an eventfd). Idempotent; call before the threads that
 * spawn start, so that the descriptor exists before anyone counts them. */
int spawn_init(void);
/* Kills the process group of every running child and makes every later spawn fail with
 * -ECANCELED without starting anything: the daemon is stopping and may not wait any longer.
 * Async-signal-safe (one write). */
void spawn_cancel_all(void);
bool spawn_cancelled(void);
/* Undoes spawn_cancel_all (tests). */
void spawn_cancel_reset(void);

/* Runs argv (argv[0] searched in PATH). Returns 0 when the command ran (look at exit_status),
 * -ETIMEDOUT after killing it at the deadline, -ECANCELED after spawn_cancel_all, or -errno when
 * it could not be started. */
int spawn_run(const char *const argv[], uint64_t timeout_usec, struct spawn_result *res);
/* The same, keeping up to output_max bytes of output (postmap -s of a large map). */
int spawn_run_max(const char *const argv[], uint64_t timeout_usec, size_t output_max,
                  struct spawn_result *res);
int spawn_run_opts(const char *const argv[], uint64_t timeout_usec, const struct spawn_options *o,
                   struct spawn_result *res);
void spawn_result_done(struct spawn_result *res);
/* Builds "prefix... extra..." (both NULL-terminated) into a new NULL-terminated vector whose
 * strings are borrowed. */
int spawn_argv(char *const *prefix, const char *const *extra, const char ***ret);

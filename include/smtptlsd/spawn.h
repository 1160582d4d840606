/* spawn.h - running postfix, postconf and postmap: posix_spawnp with an argv (never a shell),
 * stdin from /dev/null, stdout and stderr captured together (capped), and a hard time bound after
 * which the child is killed. Worker thread (and start-up). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SPAWN_OUTPUT_MAX (64 * 1024)

struct spawn_result {
        int exit_status; /* exit code, or 128 + signal */
        int timed_out;
        char *output; /* NUL-terminated, at most SPAWN_OUTPUT_MAX bytes kept */
        size_t output_len;
        size_t output_max;
};

/* Called about every 100 ms while a child runs (the worker uses it for its heartbeat). */
extern void (*spawn_progress)(void);

/* Runs argv (argv[0] searched in PATH). Returns 0 when the command ran (look at exit_status),
 * -ETIMEDOUT after killing it at the deadline, or -errno when it could not be started. */
int spawn_run(const char *const argv[], uint64_t timeout_usec, struct spawn_result *res);
/* The same, keeping up to output_max bytes of output (postmap -s of a large map). */
int spawn_run_max(const char *const argv[], uint64_t timeout_usec, size_t output_max,
                  struct spawn_result *res);
void spawn_result_done(struct spawn_result *res);
/* Builds "prefix... extra..." (both NULL-terminated) into a new NULL-terminated vector whose
 * strings are borrowed. */
int spawn_argv(char *const *prefix, const char *const *extra, const char ***ret);

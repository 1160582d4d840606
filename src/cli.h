/* cli.h - the smtptlsd command line: one table of commands (words, argument, options, help text)
 * and the parser that turns argv into an invocation, a help text or a usage error. Pure: it writes
 * only to the streams it is given and touches neither the configuration nor the database.
 * Main thread. */
#pragma once

#include <stdio.h>

#include "store/tokens.h"

enum cli_command {
        CLI_SERVE,
        CLI_MIGRATE,
        CLI_CONFIG,
        CLI_TOKEN_ADD,
        CLI_TOKEN_LIST,
        CLI_TOKEN_REVOKE,
        CLI_PUSH,
        CLI_PULL,
        CLI_IMPORT,
        _CLI_COMMAND_MAX,
};

#define CLI_EXIT_USAGE 2

struct cli_invocation {
        enum cli_command command;
        const char *config_path; /* -c/--config, or NULL for the default */
        const char *name;        /* NAME of `token add` and `token revoke` (valid) */
        enum scope scope;        /* --scope of `token add` */
        const char *file;        /* FILE of `push` ("-": standard input) */
        bool dry_run;            /* --dry-run of `push` and `import` */
        bool allow_empty;        /* --allow-empty of `push` */
        bool settings;           /* --settings of `import` */
};

/* push, pull and import talk to a daemon's API, not to the database: they need no
 * configuration file. */
bool cli_needs_config(enum cli_command command);

/* Parses argv. Returns 0 when *inv is to be run; 1 when a help text or the version was printed
 * on out (exit 0); -EINVAL when the invocation is wrong: err has what is wrong and a one-line
 * hint (exit CLI_EXIT_USAGE). */
int cli_parse(int argc, char *const *argv, struct cli_invocation *inv, FILE *out, FILE *err);

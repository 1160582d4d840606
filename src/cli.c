/* cli.c - the command table of `smtptlsd` (each command's words, argument, options and help
 * text) and its parser: `--help` anywhere in a command prints that command's help; a wrong
 * invocation names what is wrong plus a hint to the help. Main thread, before anything else. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "config.h"
#include "fault.h"
#include "util.h"

struct cli_option {
        const char *name;  /* long name, without "--" */
        char short_name;   /* 0: none */
        const char *value; /* the value's placeholder; NULL: a flag */
        bool required;
        const char *help;
        /* Takes the value into inv, or writes why it is wrong to why and returns -EINVAL. */
        int (*set)(struct cli_invocation *inv, const char *value, char *why, size_t size);
};

#define MAX_OPTIONS 32 /* of one command: a bit each in parse_options' seen */

struct cli_command_spec {
        const char *words; /* "token add" */
        const char *alias; /* another last word ("create"), or NULL */
        const char *arg;   /* the one positional argument's placeholder, or NULL */
        /* Takes the positional argument into inv, or writes why it is wrong and returns
         * -EINVAL. */
        int (*set_arg)(struct cli_invocation *inv, const char *value, char *why, size_t size);
        const char *summary;
        const char *description;
        const struct cli_option *options; /* ends with { 0 } */
};

static int set_config(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        if (isempty(value)) {
                snprintf(why, size, "the configuration file name is empty");
                return -EINVAL;
        }
        inv->config_path = value;
        return 0;
}

static int set_scope(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        if (scope_from_string(value, &inv->scope) < 0 || inv->scope == SCOPE_NONE) {
                snprintf(why, size, "scope must be read, write or admin, not '%s'", value);
                return -EINVAL;
        }
        return 0;
}

static int set_name(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        if (!name_is_valid(value)) {
                snprintf(why, size, "'%s' is not a token name: names are [a-z0-9][a-z0-9._-]{0,63}",
                         value);
                return -EINVAL;
        }
        inv->name = value;
        return 0;
}

#define OPTION_CONFIG                                                                              \
        {                                                                                          \
                "config", 'c', "FILE", false,                                                      \
                    "configuration file (default " SMTPTLSD_DEFAULT_CONFIG ")", set_config         \
        }
#define OPTION_HELP                                                                                \
        {                                                                                          \
                "help", 'h', NULL, false, "show this help and exit", NULL                          \
        }

/* The options every command takes. */
static const struct cli_option common_options[] = { OPTION_CONFIG, OPTION_HELP, { 0 } };
/* The options before a command. */
static const struct cli_option global_options[] = {
        OPTION_CONFIG,
        OPTION_HELP,
        { "version", 'V', NULL, false, "show the version and exit", NULL },
        { 0 },
};
static const struct cli_option token_add_options[] = {
        { "scope", 0, "SCOPE", true, "read, write or admin", set_scope },
        { 0 },
};
static const struct cli_option no_options[] = { { 0 } };

static int set_file(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        if (isempty(value)) {
                snprintf(why, size, "the file name is empty");
                return -EINVAL;
        }
        inv->file = value;
        return 0;
}

static int set_dry_run(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        inv->dry_run = true;
        return 0;
}

static int set_allow_empty(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        inv->allow_empty = true;
        return 0;
}

static const struct cli_option push_options[] = {
        { "dry-run", 'n', NULL, false, "show what would change; change nothing", set_dry_run },
        { "allow-empty", 0, NULL, false, "a file without one policy removes them all: mean it",
          set_allow_empty },
        { 0 },
};
static int set_settings(struct cli_invocation *inv, const char *value, char *why, size_t size)
{
        inv->settings = true;
        return 0;
}

static const struct cli_option import_options[] = {
        { "dry-run", 'n', NULL, false, "show what would change; change nothing", set_dry_run },
        { "settings", 0, NULL, false,
          "also write the settings main.cf's TLS parameters are, once proved", set_settings },
        { 0 },
};

/* What push and pull say about where the daemon is. */
#define REMOTE_ENVIRONMENT                                                                         \
        "The daemon is SMTPTLSD_API_URL (e.g. https://mx1.example:8443; default\n"                 \
        "http://127.0.0.1:8080) and the token SMTPTLSD_API_TOKEN, or the first line of the\n"      \
        "file SMTPTLSD_API_TOKEN_FILE; SMTPTLSD_API_CA_FILE names the CA to trust for https.\n"

static const struct cli_command_spec commands[_CLI_COMMAND_MAX] = {
        [CLI_SERVE] = { "serve", NULL, NULL, NULL, "run the daemon (the default)",
                        "Runs the daemon: serves the API, waits for the database, applies its\n"
                        "migrations and the committed state to Postfix, then tells systemd it is\n"
                        "ready. Stops on SIGTERM or SIGINT.",
                        no_options },
        [CLI_MIGRATE] = { "migrate", NULL, NULL, NULL, "apply database migrations and exit",
                          "Connects to database_url, applies the migrations the database lacks\n"
                          "and prints the schema version.",
                          no_options },
        [CLI_CONFIG] = { "config", NULL, NULL, NULL, "print the effective configuration",
                         "Prints every configuration key with its effective value (file, then\n"
                         "SMTPTLSD_<KEY> from the environment, else the default). Secrets in\n"
                         "database_url are not printed.",
                         no_options },
        [CLI_TOKEN_ADD] = { "token add", "create", "NAME", set_name,
                            "create an API token; the token is printed once",
                            "Creates an API token named NAME and prints it on stdout, once: only\n"
                            "its SHA-256 is stored. The same as POST /api/v1/tokens.\n"
                            "SCOPE is read (every GET, /metrics), write (plus every change) or\n"
                            "admin (plus tokens and managed policy rows).\n"
                            "Example: smtptlsd token add admin --scope admin > admin.token",
                            token_add_options },
        [CLI_TOKEN_LIST] = { "token list", NULL, NULL, NULL, "list the tokens",
                             "Prints one line per token: NAME SCOPE CREATED, and \"revoked\" "
                             "after\n"
                             "a revoked one.",
                             no_options },
        [CLI_TOKEN_REVOKE] = { "token revoke", NULL, "NAME", set_name, "revoke a token",
                               "Revokes the active token named NAME: requests with it are refused\n"
                               "from now on. The same as DELETE /api/v1/tokens/NAME.",
                               no_options },
        [CLI_PUSH] = { "push", NULL, "FILE", set_file,
                       "make the daemon's TLS policies exactly those of FILE",
                       "Sends FILE (\"-\": standard input) as a bulk replace of the unmanaged TLS\n"
                       "policies: a Postfix map source file (as `pull` writes it), or a JSON\n"
                       "document {\"items\": [...]} when it starts with '{'. Prints the change\n"
                       "(a diff of the policy map) and the job's outcome.\n" REMOTE_ENVIRONMENT
                       "A file without one policy is refused unless --allow-empty: it would "
                       "remove\n"
                       "them all.\n"
                       "Exit status: 0 applied or nothing to change, 1 refused (the reason and\n"
                       "the line are printed), 2 the daemon cannot be reached (or a usage\n"
                       "error), 3 accepted but still running when the wait ended.\n"
                       "Example: SMTPTLSD_API_TOKEN_FILE=ci.token smtptlsd push tls_policy",
                       push_options },
        [CLI_PULL] = { "pull", NULL, NULL, NULL, "print the daemon's TLS policies as a map file",
                       "Prints the unmanaged TLS policies as a Postfix map source file, which\n"
                       "`push` takes back unchanged.\n" REMOTE_ENVIRONMENT
                       "Exit status: 0, 1 refused (a bad token), 2 the daemon cannot be reached.\n"
                       "Example: smtptlsd pull > tls_policy && git diff tls_policy",
                       no_options },
        [CLI_IMPORT] = { "import", NULL, NULL, NULL,
                         "take over the policy maps the live main.cf lists",
                         "Asks the daemon to read the maps smtp_tls_policy_maps lists after its\n"
                         "own and to import every map whose entries can all be policies: they\n"
                         "become policies and main.cf no longer lists the map. The others stay,\n"
                         "after smtptlsd's map; Postfix answers every key as before. Prints per\n"
                         "map what is imported or why it stays, the entries refused, and with\n"
                         "--dry-run the main.cf change and the policy map's diff. With --settings\n"
                         "it also writes the settings whose rendering main.cf's TLS parameters\n"
                         "are (a single node only), once postconf -x reads every parameter of\n"
                         "main.cf rendered with them as it reads the live one.\n"
                         "Needs a token with scope admin.\n" REMOTE_ENVIRONMENT
                         "Exit status: 0 imported (or nothing to import), 1 refused, 2 the\n"
                         "daemon cannot be reached, 3 accepted but still running.\n"
                         "Example: smtptlsd import --dry-run --settings",
                         import_options },
};

bool cli_needs_config(enum cli_command command)
{
        return command != CLI_PUSH && command != CLI_PULL && command != CLI_IMPORT;
}

/* A command's words up to (not including) its last: "token" of "token add", "" of "serve". */
static size_t group_len(const struct cli_command_spec *c)
{
        const char *space = strrchr(c->words, ' ');
        return space ? (size_t)(space - c->words) : 0;
}

static const char *last_word(const struct cli_command_spec *c)
{
        size_t g = group_len(c);
        return c->words + (g ? g + 1 : 0);
}

static bool in_group(const struct cli_command_spec *c, const char *group)
{
        size_t g = group_len(c);
        return g == strlen(group) && strncmp(c->words, group, g) == 0;
}

static bool is_group(const char *word)
{
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (group_len(&commands[i]) && in_group(&commands[i], word))
                        return true;
        return false;
}

/* The command named word in group ("" for the top level). */
static const struct cli_command_spec *find_command(const char *group, const char *word)
{
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (in_group(&commands[i], group) &&
                    (streq(last_word(&commands[i]), word) || streq_ptr(commands[i].alias, word)))
                        return &commands[i];
        return NULL;
}

static void print_options(FILE *f, const struct cli_option *o)
{
        for (; o->name; o++) {
                char left[64], shortname[8] = "    ";
                if (o->short_name)
                        snprintf(shortname, sizeof(shortname), "-%c, ", o->short_name);
                snprintf(left, sizeof(left), "%s--%s%s%s", shortname, o->name, o->value ? " " : "",
                         o->value ? o->value : "");
                fprintf(f, "  %-22s %s%s\n", left, o->help, o->required ? " (required)" : "");
        }
}

static void print_synopsis(FILE *f, const struct cli_command_spec *c)
{
        fprintf(f, "smtptlsd [-c FILE] %s", c->words);
        if (c->arg)
                fprintf(f, " %s", c->arg);
        for (const struct cli_option *o = c->options; o->name; o++)
                fprintf(f, "%s--%s%s%s%s", o->required ? " " : " [", o->name, o->value ? " " : "",
                        o->value ? o->value : "", o->required ? "" : "]");
}

static void print_command_list(FILE *f, const char *group)
{
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
                const struct cli_command_spec *c = &commands[i];
                if (group && !in_group(c, group))
                        continue;
                char left[64];
                snprintf(left, sizeof(left), "%s%s%s", c->words, c->arg ? " " : "",
                         c->arg ? c->arg : "");
                fprintf(f, "  %-22s %s\n", left, c->summary);
        }
}

static void help_global(FILE *f)
{
        fprintf(f, "Usage: smtptlsd [-c FILE] [COMMAND] [ARGS]\n"
                   "\n"
                   "Owns the TLS part of a Postfix server and serves it as a JSON REST API.\n"
                   "\n"
                   "Commands:\n");
        print_command_list(f, NULL);
        fprintf(f, "\nOptions:\n");
        print_options(f, global_options);
        fprintf(f, "\n`smtptlsd COMMAND --help` shows a command's help. Every configuration key\n"
                   "can be overridden by SMTPTLSD_<KEY> in the environment.\n");
}

static void help_group(FILE *f, const char *group)
{
        fprintf(f, "Usage: smtptlsd [-c FILE] %s COMMAND [ARGS]\n\nCommands:\n", group);
        print_command_list(f, group);
        fprintf(f, "\n`smtptlsd %s COMMAND --help` shows a command's help.\n", group);
}

static void help_command(FILE *f, const struct cli_command_spec *c)
{
        fprintf(f, "Usage: ");
        print_synopsis(f, c);
        fprintf(f, "\n\n%s\n", c->description);
        if (c->alias)
                fprintf(f, "Also spelt: smtptlsd %.*s %s\n", (int)group_len(c), c->words, c->alias);
        fprintf(f, "\nOptions:\n");
        print_options(f, c->options);
        print_options(f, common_options);
}

/* "unknown option --x" plus the hint; what names the command ("" or " token add"). */
static int usage_error(FILE *err, const char *what, const char *fmt, ...) _printf_(3, 4);
static int usage_error(FILE *err, const char *what, const char *fmt, ...)
{
        va_list ap;
        fprintf(err, "smtptlsd%s: ", what);
        va_start(ap, fmt);
        vfprintf(err, fmt, ap);
        va_end(ap);
        fprintf(err, "\nTry 'smtptlsd%s --help'.\n", what);
        return -EINVAL;
}

static const struct cli_option *find_option(const struct cli_option *const *sets, size_t n_sets,
                                            const char *arg, const char **inline_value)
{
        *inline_value = NULL;
        for (size_t s = 0; s < n_sets; s++)
                for (const struct cli_option *o = sets[s]; o->name; o++) {
                        if (arg[1] == '-') {
                                size_t len = strlen(o->name);
                                if (strncmp(arg + 2, o->name, len) != 0)
                                        continue;
                                if (arg[2 + len] == '=')
                                        *inline_value = arg + 3 + len;
                                else if (arg[2 + len])
                                        continue;
                                return o;
                        }
                        if (o->short_name && arg[1] == o->short_name) {
                                if (arg[2])
                                        *inline_value = arg + 2;
                                return o;
                        }
                }
        return NULL;
}

/* Parses the options among argv[*i..] (and, when c is not NULL, its argument) up to the first
 * word that is not an option (c NULL) or to the end. Returns 1 when --help or --version was
 * asked for (the caller prints), 0 or -EINVAL. */
static int parse_options(int argc, char *const *argv, int *i, const struct cli_option *const *sets,
                         size_t n_sets, const struct cli_command_spec *c, const char *what,
                         struct cli_invocation *inv, bool *version, FILE *err)
{
        unsigned seen = 0; /* bit k: c->options[k] was given */
        bool arg_seen = false, positional_only = false;
        for (; *i < argc; (*i)++) {
                const char *a = argv[*i];
                if (!positional_only && streq(a, "--") && c) {
                        positional_only = true;
                        continue;
                }
                if (positional_only || a[0] != '-' || a[1] == 0) {
                        if (!c)
                                return 0; /* the command word */
                        if (!c->arg || arg_seen)
                                return usage_error(err, what, "unexpected argument '%s'", a);
                        char why[256];
                        if (c->set_arg(inv, a, why, sizeof(why)) < 0)
                                return usage_error(err, what, "%s", why);
                        arg_seen = true;
                        continue;
                }
                const char *value;
                const struct cli_option *o = find_option(sets, n_sets, a, &value);
                if (!o) {
                        /* "-x" or "--x" as typed, without a value after "=" */
                        int len = (int)strcspn(a, "=");
                        return usage_error(err, what, "unknown option %.*s", a[1] == '-' ? len : 2,
                                           a);
                }
                if (!o->value && value)
                        return usage_error(err, what, "option --%s takes no value", o->name);
                if (streq(o->name, "help"))
                        return 1;
                if (streq(o->name, "version")) {
                        *version = true;
                        return 1;
                }
                if (o->value && !value) {
                        if (*i + 1 >= argc)
                                return usage_error(err, what, "option --%s needs a value (%s)",
                                                   o->name, o->value);
                        value = argv[++*i];
                }
                char why[256];
                if (o->set(inv, value, why, sizeof(why)) < 0)
                        return usage_error(err, what, "%s", why);
                for (unsigned k = 0; c && c->options[k].name && k < MAX_OPTIONS; k++)
                        if (&c->options[k] == o)
                                seen |= 1u << k;
        }
        if (c && c->arg && !arg_seen)
                return usage_error(err, what, "missing %s", c->arg);
        for (const struct cli_option *o = c ? c->options : NULL; o && o->name; o++)
                if (o->required && !(seen & 1u << (o - c->options)))
                        return usage_error(err, what, "missing --%s %s", o->name, o->value);
        return 0;
}

static bool asks_help(int argc, char *const *argv, int from)
{
        for (int i = from; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return true;
        return false;
}

int cli_parse(int argc, char *const *argv, struct cli_invocation *inv, FILE *out, FILE *err)
{
        *inv = (struct cli_invocation){ .command = CLI_SERVE };
        int i = 1;
        bool version = false;
        const struct cli_option *const globals[] = { global_options };

        int r = parse_options(argc, argv, &i, globals, 1, NULL, "", inv, &version, err);
        if (r < 0)
                return r;
        if (r > 0) {
                if (version) {
                        fprintf(out, "smtptlsd %s\n", SMTPTLSD_VERSION);
                        if (fault_injection_compiled_in())
                                fprintf(out, "fault injection compiled in (a test build)\n");
                } else
                        help_global(out);
                return 1;
        }
        if (i >= argc)
                return 0; /* serve */

        const char *group = "";
        const char *word = argv[i++];
        if (is_group(word)) {
                group = word;
                if (i >= argc) {
                        char list[128] = "";
                        for (size_t k = 0, n = 0; k < ARRAY_SIZE(commands); k++)
                                if (in_group(&commands[k], group))
                                        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s",
                                                              n ? ", " : "",
                                                              last_word(&commands[k]));
                        char what[64];
                        snprintf(what, sizeof(what), " %s", group);
                        return usage_error(err, what, "missing command (%s)", list);
                }
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        help_group(out, group);
                        return 1;
                }
                word = argv[i++];
        }
        const struct cli_command_spec *c = find_command(group, word);
        if (!c) {
                if (*group) {
                        char what[64];
                        snprintf(what, sizeof(what), " %s", group);
                        return usage_error(err, what, "unknown command '%s %s'", group, word);
                }
                return usage_error(err, "", "unknown command '%s'", word);
        }
        char what[64];
        snprintf(what, sizeof(what), " %s", c->words);
        /* --help wins over everything else after the command: it is never taken for a NAME. */
        if (asks_help(argc, argv, i)) {
                help_command(out, c);
                return 1;
        }
        inv->command = (enum cli_command)(c - commands);
        const struct cli_option *const sets[] = { c->options, common_options };
        r = parse_options(argc, argv, &i, sets, ARRAY_SIZE(sets), c, what, inv, &version, err);
        return r > 0 ? -EINVAL : r; /* --help was handled above */
}

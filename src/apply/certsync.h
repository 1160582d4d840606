/* certsync.h - certificates that live as files: every <acme_live_directory>/<name>/ with
 * fullchain.pem and privkey.pem (type acme, used in place), and the bootstrap self-signed pair
 * named in the configuration (type system, never bindable). The worker runs it inside its
 * transaction at start-up and for a rescan job. */
#pragma once

#include <jansson.h>

#include "core/problem.h"
#include "store/db.h"

struct config;

/* Brings the acme and system rows in line with the files. Problems with single directories
 * (unreadable, bad PEM, a name taken by an imported certificate, a bound certificate whose
 * directory vanished) become warnings [{code, detail}] appended to warnings; they never fail the
 * whole scan. *summary = {"added", "changed" (another fingerprint), "removed", "acme" (every ACME
 * name seen), "missing" (bound, directory gone): [names]}. */
int certsync_run(const struct config *cfg, struct db_conn *c, json_t *warnings, json_t **summary,
                 struct problem *reterr);
/* The name the system certificate gets: its file's base name without .pem/.crt, when that is a
 * valid certificate name, else "system". */
void certsync_system_name(const struct config *cfg, char name[static 65]);

/* Opens <acme_live_directory>/<name>/<file> for reading, never blocking and never leaving the ACME
 * client's tree (the parent of acme_live_directory, certbot's /etc/letsencrypt): the symlinks of
 * live/<name>/ are followed only while they stay inside it (certbot's ../../archive/<name>/...);
 * the file must be a regular file; the tree's directories on the way (both the live and the
 * resolved one) and the file must belong to root (or to the daemon's user) and not be writable by
 * group or others. Returns the fd, or certificate_unusable with a detail naming the path. */
int certsync_acme_open(const struct config *cfg, const char *name, const char *file,
                       struct problem *reterr);
/* certsync_acme_open() and the whole file (at most 1 MiB), NUL-terminated. */
int certsync_acme_read(const struct config *cfg, const char *name, const char *file, char **ret,
                       size_t *len, struct problem *reterr);

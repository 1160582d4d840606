/* cdb.h - reading every record of a cdb file (D. J. Bernstein's constant database, which postmap
 * builds for cdb: maps), because `postmap -s` cannot list a cdb map and the worker must check that
 * a built map holds exactly the rendered entries. Worker thread. */
#pragma once

#include <stddef.h>

#include "core/policy.h"

/* All records in file order as key/value pairs (a trailing NUL that Postfix may store is
 * dropped). -EBADMSG when the file is not a well-formed cdb. */
int cdb_read_entries(const char *path, struct policy_map_entry **ret, size_t *n_ret);

/* fault.h - test-only fault points in the reconcile path (kill -9 or a stall at a named step).
 * Compiled in only with `meson -Dfault_injection=true` (the ASan test build); elsewhere every
 * fault_point() is an empty inline function. Worker thread (and one HTTP thread point). */
#pragma once

#include <stdbool.h>

#include "config.h"

/* The named points, in the order the worker passes them (docs/reliability.md):
 *   after_stage       certificate files and main.cf staged and checked by postconf, nothing swapped
 *   after_postmap     the policy index built and verified under its staged name, nothing swapped
 *   after_map_rename  the new policy index and text in place
 *   after_master_rename  master.cf swapped (submission services), main.cf not yet
 *   after_rename      main.cf swapped (the switch point), Postfix not reloaded
 *   after_reload      Postfix reloaded, the transaction still open
 *   before_commit     job records written, COMMIT not sent
 *   after_commit      committed, the clients not yet answered
 * and on an HTTP thread:
 *   submit_before_wait  a write's job recorded, its request not yet waiting for it */
#if SMTPTLSD_FAULT_INJECTION
/* Reads the file named by $SMTPTLSD_FAULT_FILE (absent: nothing happens). A line "<point> kill"
 * kills the process with SIGKILL at that point; "<point> stall <ms>" sleeps there (at most 600 s)
 * without showing progress, as a stuck worker would. */
void fault_point(const char *point);
#else
static inline void fault_point(const char *point)
{
        (void)point;
}
#endif

static inline bool fault_injection_compiled_in(void)
{
        return SMTPTLSD_FAULT_INJECTION;
}

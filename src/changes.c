/* changes.c - the daemon's change count (see changes.h). Any thread. */
#include "changes.h"

#include <stdatomic.h>

static atomic_uint_fast64_t count = 1;

uint64_t changes_now(void)
{
        return atomic_load_explicit(&count, memory_order_acquire);
}

void changes_bump(void)
{
        atomic_fetch_add_explicit(&count, 1, memory_order_acq_rel);
}

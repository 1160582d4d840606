/* prune.h - housekeeping of the rendered files: staged leftovers, unreferenced certificate
 * version directories. Worker thread and start-up, never concurrently. */
#pragma once

struct config;

/* Start-up: removes staged leftovers of an interrupted apply. */
void reconcile_cleanup_staging(const struct config *cfg);
/* After a commit: removes certificate version directories no main.cf (live or lkg) uses. */
void reconcile_prune_certs(const struct config *cfg);

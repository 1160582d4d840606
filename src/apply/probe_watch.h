/* probe_watch.h - the probe watch: re-probes every enabled policy above may on
 * probe_watch_interval, one destination at a time and at most one a second (spread by when each
 * was last probed; a policy changed since its last probe comes first), records each in the
 * probes' audit trail (reason 'watch', actor "watch"), logs a warning when a destination now
 * fails its level, and keeps the smtptlsd_policies_failing_probe gauge. /api/v1/status reads
 * the same rows for its warnings. Its own thread; made and stopped by main.c. */
#pragma once

struct app;
struct probe_watch;

/* Starts the thread (none when probe_watch_interval is 0: *ret NULL). */
int probe_watch_start(struct app *app, struct probe_watch **ret);
/* Stops and frees it (after probe_runner_stop: a probe it waits for is then answered at once);
 * NULL: nothing. */
void probe_watch_stop(struct probe_watch *w);

/* runner.h - where destination probes run: a fixed number of probe threads (never the worker,
 * never an HTTP thread), a bounded queue before them, one probe per destination at a time
 * (a request for a destination being probed waits for that probe) and a cache of recent
 * reports per destination. Stopping cancels the probes in flight at once (their waits poll a
 * shared eventfd) and answers those still queued. Made by main.c; any thread submits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "probe/probe.h"

struct probe_runner;

/* A finished probe: r is valid during the call only. status 0 (r may still carry an error of
 * the destination), -ECANCELED (the daemon stops; r says so), or another negative errno of the
 * probe itself (-ENOMEM; r NULL or partial: not to be shown as a finding). cached: r
 * came from the cache. Called on a probe thread, or on the submitting thread for a cache hit
 * or a refusal after the request was taken. */
typedef void (*probe_done_fn)(const struct probe_report *r, bool cached, int status, void *arg);

/* cfg is copied by reference: it must outlive the runner. threads: probes at once; queue_max:
 * probes waiting beyond them; cache_usec: how long a report answers again (0: never). */
int probe_runner_new(const struct probe_config *cfg, unsigned threads, unsigned queue_max,
                     uint64_t cache_usec, struct probe_runner **ret);
/* Asks for a report of d: done is called exactly once when 0 is returned (maybe before this
 * returns, from the cache). fresh: not from the cache (a new probe; the cache is refreshed).
 * -EAGAIN: the queue is full (done not called); -ESHUTDOWN: stopping; -ENOMEM. */
int probe_runner_submit(struct probe_runner *pr, const struct probe_destination *d, bool fresh,
                        probe_done_fn done, void *arg);
/* Cancels the probes in flight, answers the queued ones (-ECANCELED) and joins the threads;
 * later submits get -ESHUTDOWN. */
void probe_runner_stop(struct probe_runner *pr);
/* Stops it if needed and frees it; NULL: nothing. */
void probe_runner_free(struct probe_runner *pr);

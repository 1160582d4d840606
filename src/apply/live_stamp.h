/* live_stamp.h - a number that changes whenever Postfix's live files (main.cf, the policy map's
 * text and index) may have changed, hand edits included: the stamp of the read model's replies
 * that show them (GET /api/v1/status and /config, api/status.c). Counted from inotify events in
 * the directories the files live in, read without blocking by whoever asks; stat() of the three
 * files when inotify cannot watch them. HTTP threads ask; it has no thread of its own. */
#pragma once

#include <stdint.h>

struct config;
struct live_stamp;

/* Never fails for want of inotify (the stamp then comes from stat()); -ENOMEM. */
int live_stamp_new(const struct config *cfg, struct live_stamp **ret);
void live_stamp_free(struct live_stamp *s);

/* The stamp now: different from every earlier one if any of the files changed since (an event
 * queued by the change is read here, so a change whose write returned before this call is
 * seen). */
uint64_t live_stamp_now(struct live_stamp *s);

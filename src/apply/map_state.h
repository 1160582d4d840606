/* map_state.h - what the live policy map is: the version of the policies it was rendered at
 * (store_policies_map_version), kept in the state directory beside the identity (inode, size,
 * modification time) of the text and index it describes. It lets the next apply take only the
 * rows changed since (store_policies_changes, core/map_merge.h) and edit a copy of the index
 * instead of rendering, building and checking the whole map. Any doubt - no record, a file
 * changed by someone else, a crash between the swap and the record, a restore - and the map is
 * rendered whole. Worker thread (and start-up). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

/* The live map as the record describes it: its text (owned), the version it is at. */
struct map_base {
        char *text;
        size_t len;
        int64_t version;
};

/* 1 with *b when the record exists and the live text and index are the files it describes
 * (the text read into b->text); 0 when not (render whole); < 0 on a read error. */
int map_state_read(const struct config *cfg, struct map_base *b);
void map_base_done(struct map_base *b);
/* Records the live map (just swapped in) as being at version. */
int map_state_write(const struct config *cfg, int64_t version);
/* Forgets the record: the files are about to change by other means (a restore). */
void map_state_forget(const struct config *cfg);

/* map_merge.h - a generation's changes merged into the policy map's source text, and the edit
 * they make to its index: what lets a write change a few rows of a map of 100,000 without
 * rendering, building or checking the other rows (apply/plan.c, apply/stage.c). The text is
 * POLICY_MAP_HEADER, then one block per enabled policy sorted by destination (byte order): its
 * line, then the line of its U-label key for an internationalized destination (policy_render.h).
 * Pure; any thread. */
#pragma once

#include <stddef.h>

#include "util.h"

/* One destination's change: its new block (policy_map_render's lines for it, without the
 * header), or NULL when it leaves the map (deleted, disabled). */
struct map_change {
        const char *destination;
        const char *block;
};

/* What a merge changes in the index: the new lines ("key<TAB>value\n", for postmap -i -r) and
 * the keys gone ("key\n", for postmap -d -). */
struct map_edit {
        struct strbuf put, del;
        size_t n_put, n_del;
};

/* Merges changes (sorted by destination in byte order, each destination once) into the text
 * old: the new text in *text (NUL-terminated), what it changes in the index in *edit (empty
 * when nothing changed). -EINVAL when old is not a text policy_map_render could have made (a
 * hand edit: the caller renders the map whole), -ENOMEM. */
int map_merge(const char *old, size_t old_len, const struct map_change *changes, size_t n,
              char **text, size_t *len, struct map_edit *edit);
void map_edit_done(struct map_edit *e);

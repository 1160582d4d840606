/* map_state.c - the record of what the live policy map is (see map_state.h). Worker thread (and
 * start-up). */
#include "apply/map_state.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "conf.h"
#include "util.h"

#define RECORD     "policy_map.version"
#define RECORD_MAX 512
/* the text of a map of 1,000,000 policies is about 60 MiB */
#define TEXT_MAX (1u << 30)

struct identity {
        uint64_t ino, size, mtime_ns;
};

static int identity_of(const char *path, struct identity *id)
{
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        *id = (struct identity){ (uint64_t)st.st_ino, (uint64_t)st.st_size,
                                 (uint64_t)st.st_mtim.tv_sec * 1000000000u +
                                     (uint64_t)st.st_mtim.tv_nsec };
        return 0;
}

/* The paths of the record, the text and the index. */
static int paths(const struct config *cfg, char record[PATH_MAX], char text[PATH_MAX],
                 char index[PATH_MAX])
{
        char state[PATH_MAX];
        int r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = layout_join(state, RECORD, record, PATH_MAX);
        if (r >= 0)
                r = layout_policy_map(cfg, text, PATH_MAX);
        if (r >= 0)
                r = layout_policy_index(cfg, index, PATH_MAX);
        return r;
}

int map_state_read(const struct config *cfg, struct map_base *b)
{
        char record[PATH_MAX], text[PATH_MAX], index[PATH_MAX];
        *b = (struct map_base){ 0 };
        int r = paths(cfg, record, text, index);
        if (r < 0)
                return r;
        _cleanup_free_ char *rec = NULL;
        size_t len = 0;
        r = fs_read_file(record, RECORD_MAX, &rec, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        struct identity want[2], have[2];
        char type[16];
        long long version = 0;
        if (sscanf(rec,
                   "v1 %15s %lld %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                   " %" SCNu64,
                   type, &version, &want[0].ino, &want[0].size, &want[0].mtime_ns, &want[1].ino,
                   &want[1].size, &want[1].mtime_ns) != 8 ||
            !streq(type, cfg->policy_map_type))
                return 0; /* another map type since: the index is another file */
        if (identity_of(text, &have[0]) < 0 || identity_of(index, &have[1]) < 0)
                return 0;
        for (size_t i = 0; i < 2; i++)
                if (have[i].ino != want[i].ino || have[i].size != want[i].size ||
                    have[i].mtime_ns != want[i].mtime_ns)
                        return 0;
        r = fs_read_file(text, TEXT_MAX, &b->text, &b->len);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        b->version = version;
        return 1;
}

void map_base_done(struct map_base *b)
{
        free(b->text);
        *b = (struct map_base){ 0 };
}

int map_state_write(const struct config *cfg, int64_t version)
{
        char record[PATH_MAX], text[PATH_MAX], index[PATH_MAX], staged[PATH_MAX + 8];
        struct identity id[2] = { 0 };
        int r = paths(cfg, record, text, index);
        if (r >= 0)
                r = identity_of(text, &id[0]);
        if (r >= 0)
                r = identity_of(index, &id[1]);
        if (r < 0) {
                map_state_forget(cfg);
                return r;
        }
        char line[RECORD_MAX];
        int n = snprintf(line, sizeof(line),
                         "v1 %s %lld %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                         " %" PRIu64 "\n",
                         cfg->policy_map_type, (long long)version, id[0].ino, id[0].size,
                         id[0].mtime_ns, id[1].ino, id[1].size, id[1].mtime_ns);
        snprintf(staged, sizeof(staged), "%s.new", record);
        r = fs_write_file(staged, line, (size_t)n, 0600);
        if (r >= 0)
                r = fs_replace(staged, record, NULL);
        if (r < 0)
                map_state_forget(cfg);
        return r;
}

void map_state_forget(const struct config *cfg)
{
        char record[PATH_MAX], text[PATH_MAX], index[PATH_MAX];
        if (paths(cfg, record, text, index) >= 0)
                unlink(record);
}

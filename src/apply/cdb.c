/* cdb.c - the records of a cdb file (see cdb.h). The format: a 2048-byte header of 256 (position,
 * length) pairs of little-endian 32-bit numbers pointing at hash tables, then the records
 * (key length, data length, key, data) up to the first hash table. Worker thread. */
#include "apply/cdb.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apply/fsutil.h"
#include "util.h"

#define CDB_HEADER 2048
#define CDB_MAX    (1u << 30)

static uint32_t le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static char *copy_field(const unsigned char *p, uint32_t len)
{
        if (len > 0 && p[len - 1] == 0)
                len--;
        char *s = malloc((size_t)len + 1);
        if (s) {
                memcpy(s, p, len);
                s[len] = 0;
        }
        return s;
}

int cdb_read_entries(const char *path, struct policy_map_entry **ret, size_t *n_ret)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, n = 0, cap = 0;
        struct policy_map_entry *v = NULL;
        int r = fs_read_file(path, CDB_MAX, &buf, &len);
        if (r < 0)
                return r;
        const unsigned char *d = (const unsigned char *)buf;
        if (len < CDB_HEADER)
                return -EBADMSG;
        uint32_t end = UINT32_MAX;
        for (int i = 0; i < 256; i++) {
                uint32_t pos = le32(d + 8 * i);
                if (pos < end)
                        end = pos;
        }
        if (end < CDB_HEADER || end > len)
                return -EBADMSG;
        for (uint32_t pos = CDB_HEADER; pos < end;) {
                if (end - pos < 8)
                        goto bad;
                uint32_t klen = le32(d + pos), dlen = le32(d + pos + 4);
                if (klen > end - pos - 8 || dlen > end - pos - 8 - klen)
                        goto bad;
                if (n == cap) {
                        size_t nc = cap ? 2 * cap : 64;
                        struct policy_map_entry *nv = realloc(v, nc * sizeof(*v));
                        if (!nv) {
                                policy_map_entries_free(v, n);
                                return -ENOMEM;
                        }
                        v = nv;
                        cap = nc;
                }
                v[n] = (struct policy_map_entry){
                        .key = copy_field(d + pos + 8, klen),
                        .value = copy_field(d + pos + 8 + klen, dlen),
                        .line = n + 1,
                };
                if (!v[n].key || !v[n].value) {
                        policy_map_entries_free(v, n + 1);
                        return -ENOMEM;
                }
                n++;
                pos += 8 + klen + dlen;
        }
        *ret = v;
        *n_ret = n;
        return 0;
bad:
        policy_map_entries_free(v, n);
        return -EBADMSG;
}

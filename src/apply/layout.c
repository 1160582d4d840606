/* layout.c - path arithmetic for every file smtptlsd renders (see layout.h). Pure. */
#include "apply/layout.h"

#include <errno.h>
#include <stdio.h>

#include "conf.h"
#include "util.h"

static int fmt(char *buf, size_t size, const char *a, const char *b, const char *c)
{
        int n = snprintf(buf, size, "%s%s%s", a, b, c);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int layout_join(const char *dir, const char *file, char *buf, size_t size)
{
        return fmt(buf, size, dir, "/", file);
}

int layout_main_cf(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", "main.cf");
}

int layout_state_dir(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", LAYOUT_STATE_DIR);
}

int layout_check_dir(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", LAYOUT_STATE_DIR "/check");
}

int layout_main_cf_lkg(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", LAYOUT_STATE_DIR "/main.cf.lkg");
}

int layout_master_cf(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", "master.cf");
}

int layout_master_cf_lkg(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/",
                   LAYOUT_STATE_DIR "/master.cf.lkg");
}

int layout_master_cf_pending(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/",
                   LAYOUT_STATE_DIR "/master.cf.pending");
}

int layout_imported_dir(const struct config *cfg, const char *name, const char *fingerprint,
                        char *buf, size_t size)
{
        char version[17];
        size_t n = 0;
        /* "AB:CD:..." -> "abcd..." (16 hex digits) */
        for (const char *p = fingerprint; *p && n < 16; p++)
                if (*p != ':')
                        version[n++] = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
        version[n] = 0;
        int r = snprintf(buf, size, "%s/%s/%s", cfg->certificate_directory, name, version);
        return r < 0 || (size_t)r >= size ? -ENAMETOOLONG : 0;
}

int layout_acme_dir(const struct config *cfg, const char *name, char *buf, size_t size)
{
        return fmt(buf, size, cfg->acme_live_directory, "/", name);
}

json_t *layout_cert_files_json(const struct config *cfg, const json_t *cert)
{
        const char *name = json_string_value(json_object_get(cert, "name"));
        const char *type = json_string_value(json_object_get(cert, "type"));
        const char *fp = json_string_value(json_object_get(cert, "sha256_fingerprint"));
        char dir[4096], key[4200], chain[4200];
        if (!name || !type)
                return json_null();
        if (streq(type, "system"))
                return json_pack("{s:s, s:s}", "chain", cfg->system_certificate_file, "key",
                                 cfg->system_key_file);
        int r = streq(type, "acme")
                    ? layout_acme_dir(cfg, name, dir, sizeof(dir))
                    : layout_imported_dir(cfg, name, fp ? fp : "", dir, sizeof(dir));
        if (r < 0 || layout_join(dir, "fullchain.pem", chain, sizeof(chain)) < 0 ||
            layout_join(dir, "privkey.pem", key, sizeof(key)) < 0)
                return json_null();
        return json_pack("{s:s, s:s}", "chain", chain, "key", key);
}

int layout_policy_map(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/", LAYOUT_POLICY_MAP);
}

int layout_policy_index(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/" LAYOUT_POLICY_MAP,
                   layout_map_suffix(cfg->policy_map_type));
}

int layout_policy_staged(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/",
                   LAYOUT_STATE_DIR "/tls_policy.new");
}

int layout_policy_lkg(const struct config *cfg, char *buf, size_t size)
{
        return fmt(buf, size, cfg->postfix_config_directory, "/",
                   LAYOUT_STATE_DIR "/tls_policy.lkg");
}

int layout_map_file(const char *spec, char *buf, size_t size)
{
        const char *colon = strchr(spec, ':');
        if (!colon || colon[1] != '/')
                return -EINVAL;
        char type[32];
        size_t tl = (size_t)(colon - spec);
        if (tl == 0 || tl >= sizeof(type))
                return -EINVAL;
        memcpy(type, spec, tl);
        type[tl] = 0;
        bool indexed = streq(type, "hash") || streq(type, "btree") || streq(type, "lmdb") ||
                       streq(type, "cdb");
        if (!indexed && !streq(type, "texthash"))
                return -EINVAL;
        int n = snprintf(buf, size, "%s%s", colon + 1, indexed ? layout_map_suffix(type) : "");
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

const char *layout_map_suffix(const char *type)
{
        if (streq(type, "lmdb"))
                return ".lmdb";
        if (streq(type, "cdb"))
                return ".cdb";
        return ".db";
}

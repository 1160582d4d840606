/* layout.c - path arithmetic for every file smtptlsd renders (see layout.h). Pure. */
#include "smtptlsd/layout.h"

#include <errno.h>
#include <stdio.h>

#include "smtptlsd/conf.h"

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

int layout_imported_parent(const struct config *cfg, const char *name, char *buf, size_t size)
{
        return fmt(buf, size, cfg->certificate_directory, "/", name);
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

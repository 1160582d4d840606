/* log.c - stderr logging with <N> prefixes (sd-daemon(3) style). Any thread; one write per line. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/name_code.h"

int log_max_level = LOG_INFO;

static const struct name_code level_names[] = {
        { "err", LOG_ERR },   { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
        { "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

int log_level_from_string(const char *s)
{
        int level;
        int r = name_to_code(level_names, ARRAY_SIZE(level_names), s, &level);
        return r < 0 ? r : level;
}

void log_internal(int level, const char *fmt, ...)
{
        char buf[2048];
        int saved = errno;
        int n = snprintf(buf, sizeof(buf), "<%d>", level);
        va_list ap;

        va_start(ap, fmt);
        int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m < 0)
                m = 0;
        size_t len = (size_t)n + (size_t)m;
        if (len > sizeof(buf) - 2)
                len = sizeof(buf) - 2;
        /* One line per message: a newline inside a message would forge a second log record. */
        for (size_t i = (size_t)n; i < len; i++)
                if (buf[i] == '\n' || buf[i] == '\r')
                        buf[i] = ' ';
        buf[len++] = '\n';
        ssize_t w = write(STDERR_FILENO, buf, len);
        (void)w;
        errno = saved;
}

/* log.h - leveled logging to stderr with <N> priority prefixes that journald understands.
 * Thread-safe: each message is one write(2). Never pass a key, a token or a PEM to these. */
#pragma once

#include <syslog.h>

#include "util.h"

extern int log_max_level;

int log_level_from_string(const char *s);

void log_internal(int level, const char *fmt, ...) _printf_(2, 3);

#define log_at(level, ...)                                                                         \
        do {                                                                                       \
                if ((level) <= log_max_level)                                                      \
                        log_internal((level), __VA_ARGS__);                                        \
        } while (0)

#define log_error(...)   log_at(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_at(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_DEBUG, __VA_ARGS__)

/* Logs at level and returns r (a negative error), for "return log_error_errno(r, ...)". */
#define log_errno(level, r, ...)                                                                   \
        __extension__({                                                                            \
                int _r_ = (r);                                                                     \
                log_at((level), __VA_ARGS__);                                                      \
                _r_ < 0 ? _r_ : -_r_;                                                              \
        })

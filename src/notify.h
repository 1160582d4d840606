/* notify.h - talking to systemd through sd_notify: READY, STATUS, WATCHDOG, STOPPING,
 * EXTEND_TIMEOUT_USEC. Each call is a no-op without NOTIFY_SOCKET. Main thread (the worker may
 * set STATUS). */
#pragma once

#include <stdint.h>

void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_stopping(void);
void notify_extend_timeout(uint64_t usec);
void notify_watchdog(void);
/* WATCHDOG_USEC when the watchdog is enabled for this process, else 0. */
uint64_t notify_watchdog_usec(void);

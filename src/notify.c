/* notify.c - sd_notify wrappers (see notify.h). Main thread and worker. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

static void send_with_status(const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void send_with_status(const char *prefix, const char *fmt, va_list ap)
{
        char status[512];
        vsnprintf(status, sizeof(status), fmt, ap);
        for (char *p = status; *p; p++)
                if (*p == '\n')
                        *p = ' ';
        sd_notifyf(0, "%sSTATUS=%s", prefix, status);
}

void notify_status(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        send_with_status("", fmt, ap);
        va_end(ap);
}

void notify_ready(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        send_with_status("READY=1\n", fmt, ap);
        va_end(ap);
}

void notify_stopping(void)
{
        sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing requests in progress");
}

void notify_extend_timeout(uint64_t usec)
{
        sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

void notify_watchdog(void)
{
        sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
        uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) > 0)
                return usec;
        return 0;
}

/* fault.c - test-only fault points (see fault.h): what $SMTPTLSD_FAULT_FILE asks for at a named
 * step of the worker. Built only with `meson -Dfault_injection=true`. Worker thread. */
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define FAULT_FILE_MAX     4096
#define FAULT_STALL_MAX_MS 600000L

void fault_point(const char *point)
{
        const char *path = getenv("SMTPTLSD_FAULT_FILE");
        char buf[FAULT_FILE_MAX];
        if (isempty(path))
                return;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return;
        buf[n] = 0;
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[64], action[16];
                long ms = 0;
                int got = sscanf(line, "%63s %15s %ld", name, action, &ms);
                if (got < 2 || !streq(name, point))
                        continue;
                if (streq(action, "kill")) {
                        log_warning("fault injection: SIGKILL at %s", point);
                        raise(SIGKILL);
                } else if (streq(action, "stall") && got == 3 && ms > 0) {
                        if (ms > FAULT_STALL_MAX_MS)
                                ms = FAULT_STALL_MAX_MS;
                        log_warning("fault injection: stalling %ld ms at %s", ms, point);
                        struct timespec ts = { .tv_sec = ms / 1000,
                                               .tv_nsec = (ms % 1000) * 1000000 };
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                        log_warning("fault injection: %s resumes", point);
                }
                return;
        }
}

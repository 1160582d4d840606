/* fsutil.c - atomic file replacement and small file helpers (see fsutil.h). Worker thread and
 * start-up. Every write is fsynced before it becomes visible under its final name. */
#include "apply/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int fs_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
        _cleanup_close_ int fd =
            open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        /* The mode of an existing file is not changed by open(): set it explicitly. */
        if (fchmod(fd, mode) < 0)
                return -errno;
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        if (fsync(fd) < 0)
                return -errno;
        int r = close(TAKE_FD(fd));
        return r < 0 ? -errno : 0;
}

/* Reads the whole regular file open as fd (at most max bytes). The caller opened it with
 * O_NONBLOCK, so that a FIFO or a device never blocks the open; fstat then refuses anything but a
 * regular file before a byte is read. */
int fs_read_fd(int fd, size_t max, char **ret, size_t *len)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EISDIR;
        if ((size_t)st.st_size > max)
                return -EFBIG;
        char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        size_t got = 0;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = 0;
        *ret = buf;
        if (len)
                *len = got;
        return 0;
}

int fs_read_file(const char *path, size_t max, char **ret, size_t *len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return fs_read_fd(fd, max, ret, len);
}

int fs_open_beneath(int dirfd, const char *rel)
{
        struct open_how how = {
                .flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

int fs_fsync_dir(const char *dir)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

static int fsync_parent(const char *path)
{
        char buf[PATH_MAX];
        if (strcpy_bounded(buf, sizeof(buf), path) < 0)
                return -ENAMETOOLONG;
        return fs_fsync_dir(dirname(buf));
}

int fs_replace(const char *staged, const char *target, const char *lkg)
{
        int r;
        if (lkg) {
                if (unlink(lkg) < 0 && errno != ENOENT)
                        return -errno;
                if (link(target, lkg) < 0 && errno != ENOENT)
                        return -errno;
        }
        if (rename(staged, target) < 0)
                return -errno;
        r = fsync_parent(target);
        if (r < 0)
                return r;
        if (lkg) {
                r = fsync_parent(lkg);
                if (r < 0)
                        return r;
        }
        return 0;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        if (strcpy_bounded(buf, sizeof(buf), path) < 0)
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int remove_at(int parent, const char *name)
{
        if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return -errno;
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = remove_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int fs_remove_tree(const char *path)
{
        return remove_at(AT_FDCWD, path);
}

int fs_set_mtime_ago(const char *path, unsigned seconds)
{
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        now.tv_sec -= seconds;
        struct timespec times[2] = { now, now };
        return utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

int fs_same_content(const char *a, const void *data, size_t len)
{
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        int r = fs_read_file(a, len + 1, &buf, &n);
        if (r < 0)
                return 0;
        return n == len && memcmp(buf, data, len) == 0;
}

/* Copies all of in (open for reading, at its start) to out: in the kernel (copy_file_range: no
 * buffer of ours, a reflink where the file system has them), else through 64 KiB at a time. */
static int copy_fd(int in, int out)
{
        bool kernel = true;
        char buf[65536];
        for (;;) {
                ssize_t n = kernel ? copy_file_range(in, NULL, out, NULL, 1u << 30, 0)
                                   : read(in, buf, sizeof(buf));
                if (n == 0)
                        return 0;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && kernel &&
                    (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
                        kernel = false; /* both offsets moved together: on from them */
                        continue;
                }
                if (n < 0)
                        return -errno;
                for (ssize_t done = 0; !kernel && done < n;) {
                        ssize_t w = write(out, buf + done, (size_t)(n - done));
                        if (w < 0 && errno != EINTR)
                                return -errno;
                        done += w > 0 ? w : 0;
                }
        }
}

int fs_copy_file(const char *src, const char *dst, mode_t mode)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (in < 0)
                return -errno;
        if (fstat(in, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EISDIR;
        if (asprintf(&tmp, "%s.tmp", dst) < 0)
                return -ENOMEM;
        _cleanup_close_ int out =
            open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
        int r = out < 0 ? -errno : 0;
        if (r >= 0 && fchmod(out, mode) < 0)
                r = -errno;
        if (r >= 0)
                r = copy_fd(in, out);
        if (r >= 0 && fsync(out) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(out)) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, dst) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

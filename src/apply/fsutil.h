/* fsutil.h - files that must be either old or new, never torn: write to a staged name, fsync,
 * keep the current file as last-known-good (a hard link), rename into place, fsync the directory.
 * Worker thread (and start-up). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Creates or truncates path (never following a symlink), writes all of data, sets mode, fsyncs. */
int fs_write_file(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole regular file of at most max bytes into a NUL-terminated buffer. The open never
 * blocks (O_NONBLOCK): a FIFO or a device is refused (-EISDIR) without waiting for a writer. */
int fs_read_file(const char *path, size_t max, char **ret, size_t *len);
/* Opens dirfd/rel for reading, without blocking (O_NONBLOCK), resolving every component, symlinks
 * included, beneath dirfd (openat2 RESOLVE_BENEATH): an absolute symlink, or one whose target
 * leaves the tree, is refused (-EXDEV). Returns the fd or a negative errno. */
int fs_open_beneath(int dirfd, const char *rel);
/* fs_read_file() for a file already open. */
int fs_read_fd(int fd, size_t max, char **ret, size_t *len);
int fs_fsync_dir(const char *dir);
/* Moves staged over target atomically. When lkg is given and target exists, target is first
 * hard-linked as lkg (replacing an older lkg), so the previous version stays available. Both
 * directories are fsynced. All paths must be on one file system. */
int fs_replace(const char *staged, const char *target, const char *lkg);
/* Copies a regular file to a new inode at dst (staged and renamed, so dst is never partial). */
int fs_copy_file(const char *src, const char *dst, mode_t mode);
/* mkdir -p with mode for the directories it creates. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Removes a directory tree (no symlinks followed). Missing is not an error. */
int fs_remove_tree(const char *path);
/* Sets a file's mtime (and atime) to seconds before now. */
int fs_set_mtime_ago(const char *path, unsigned seconds);
/* Whether two files have the same bytes (a missing file differs from any file). */
int fs_same_content(const char *a, const void *data, size_t len);

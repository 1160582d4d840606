/* test_fsutil.c - atomic replacement: content, mode, last-known-good, no symlink following, and a
 * writer killed at random moments never leaves a torn file behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <signal.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "apply/fsutil.h"
#include "util.h"

static char dir[64];

static int setup(void **state)
{
        strcpy(dir, "/tmp/smtptlsd-fs-XXXXXX");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state)
{
        assert_int_equal(fs_remove_tree(dir), 0);
        struct stat st;
        assert_int_equal(stat(dir, &st), -1);
        return 0;
}

static void path(char *buf, const char *name)
{
        snprintf(buf, 256, "%s/%s", dir, name);
}

static void test_write_read_mode(void **state)
{
        char p[256];
        char *data = NULL;
        size_t len = 0;
        struct stat st;
        path(p, "key.pem");
        assert_int_equal(fs_write_file(p, "secret", 6, 0600), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(fs_read_file(p, 100, &data, &len), 0);
        assert_int_equal(len, 6);
        assert_string_equal(data, "secret");
        free(data);
        assert_int_equal(fs_read_file(p, 3, &data, &len), -EFBIG);
        /* rewriting an existing 0644 file as 0600 tightens its mode */
        assert_int_equal(chmod(p, 0644), 0);
        assert_int_equal(fs_write_file(p, "x", 1, 0600), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_true(fs_same_content(p, "x", 1));
        assert_false(fs_same_content(p, "y", 1));
        assert_false(fs_same_content(p, "xx", 2));
}

static void test_no_symlink_following(void **state)
{
        char target[256], link_path[256];
        path(target, "elsewhere");
        path(link_path, "link");
        assert_int_equal(fs_write_file(target, "orig", 4, 0644), 0);
        assert_int_equal(symlink(target, link_path), 0);
        assert_int_equal(fs_write_file(link_path, "evil", 4, 0644), -ELOOP);
        assert_true(fs_same_content(target, "orig", 4));
}

static void test_replace_keeps_lkg(void **state)
{
        char staged[256], target[256], lkg[256];
        path(staged, ".main.cf.new");
        path(target, "main.cf");
        path(lkg, "main.cf.lkg");
        assert_int_equal(fs_write_file(target, "v1\n", 3, 0644), 0);
        assert_int_equal(fs_write_file(staged, "v2\n", 3, 0644), 0);
        assert_int_equal(fs_replace(staged, target, lkg), 0);
        assert_true(fs_same_content(target, "v2\n", 3));
        assert_true(fs_same_content(lkg, "v1\n", 3));
        assert_int_equal(access(staged, F_OK), -1);
        assert_int_equal(fs_write_file(staged, "v3\n", 3, 0644), 0);
        assert_int_equal(fs_replace(staged, target, lkg), 0);
        assert_true(fs_same_content(target, "v3\n", 3));
        assert_true(fs_same_content(lkg, "v2\n", 3));
        /* first install: no target yet, no lkg made */
        char t2[256], l2[256];
        path(t2, "new-file");
        path(l2, "new-file.lkg");
        assert_int_equal(fs_write_file(staged, "a", 1, 0644), 0);
        assert_int_equal(fs_replace(staged, t2, l2), 0);
        assert_true(fs_same_content(t2, "a", 1));
        assert_int_equal(access(l2, F_OK), -1);
}

static void test_mkdir_and_mtime(void **state)
{
        char p[256], f[300];
        struct stat st;
        path(p, "a/b/c");
        assert_int_equal(fs_mkdir_p(p, 0700), 0);
        assert_int_equal(fs_mkdir_p(p, 0700), 0);
        snprintf(f, sizeof(f), "%s/file", p);
        assert_int_equal(fs_write_file(f, "x", 1, 0600), 0);
        assert_int_equal(fs_set_mtime_ago(f, 5), 0);
        assert_int_equal(stat(f, &st), 0);
        time_t now = time(NULL);
        assert_true(st.st_mtime <= now - 4 && st.st_mtime >= now - 7);
}

/* A child replaces the file with alternating large versions as fast as it can; the parent kills
 * it at random moments. After each kill the target must be exactly one complete version. */
static void test_kill_never_tears(void **state)
{
        enum { SIZE = 256 * 1024, ROUNDS = 40 };
        char staged[256], target[256], lkg[256];
        static char a[SIZE], b[SIZE];
        memset(a, 'A', SIZE);
        memset(b, 'B', SIZE);
        path(staged, ".big.new");
        path(target, "big");
        path(lkg, "big.lkg");
        assert_int_equal(fs_write_file(target, a, SIZE, 0644), 0);
        srand(42);
        for (int round = 0; round < ROUNDS; round++) {
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        for (unsigned i = 0;; i++) {
                                const char *v = (i & 1) ? a : b;
                                if (fs_write_file(staged, v, SIZE, 0644) < 0 ||
                                    fs_replace(staged, target, lkg) < 0)
                                        _exit(1);
                        }
                }
                usleep((useconds_t)(1000 + rand() % 20000));
                kill(pid, SIGKILL);
                int status;
                waitpid(pid, &status, 0);
                assert_true(WIFSIGNALED(status));
                char *data = NULL;
                size_t len = 0;
                assert_int_equal(fs_read_file(target, SIZE * 2, &data, &len), 0);
                assert_int_equal(len, SIZE);
                assert_true(memcmp(data, a, SIZE) == 0 || memcmp(data, b, SIZE) == 0);
                free(data);
                unlink(staged); /* start-up removes stale staged files the same way */
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_write_read_mode),
                cmocka_unit_test(test_no_symlink_following),
                cmocka_unit_test(test_replace_keeps_lkg),
                cmocka_unit_test(test_mkdir_and_mtime),
                cmocka_unit_test(test_kill_never_tears),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_util.c - the shared helpers of lib/core (util.h) that several modules
 * lean on: vs_opendirat (a directory stream of its own below a directory
 * fd, the walk of images, result files and rm -rf) and the cleanup
 * attributes that free on scope exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vslice/util.h"

static char base[] = "/tmp/vslice-test-util-XXXXXX";

static int setup(void **state)
{
	if (!mkdtemp(base))
		return -1;
	char p[256];
	snprintf(p, sizeof(p), "%s/sub", base);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/sub/a", base);
	close(open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	snprintf(p, sizeof(p), "%s/file", base);
	close(open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	snprintf(p, sizeof(p), "%s/link", base);
	return symlink("sub", p);
}

static int teardown(void **state)
{
	struct vs_error err;
	return vs_rm_rf(base, &err);
}

static size_t count_entries(DIR *d)
{
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	return n;
}

static void test_opendirat(void **state)
{
	cleanup_close int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);

	/* "." is dfd's directory, read through an fd of its own: twice in a
	 * row gives the same entries, and dfd stays open. */
	for (int i = 0; i < 2; i++) {
		cleanup_closedir DIR *d = vs_opendirat(dfd, ".", 0);
		assert_non_null(d);
		assert_int_not_equal(dirfd(d), dfd);
		assert_int_equal(count_entries(d), 3); /* sub, file, link */
	}
	assert_true(fcntl(dfd, F_GETFD) >= 0);

	cleanup_closedir DIR *sub = vs_opendirat(dfd, "sub", O_NOFOLLOW);
	assert_non_null(sub);
	assert_int_equal(count_entries(sub), 1);

	/* Failures: NULL with errno, and no fd left behind. */
	int before = dup(0);
	close(before);
	errno = 0;
	assert_null(vs_opendirat(dfd, "missing", 0));
	assert_int_equal(errno, ENOENT);
	assert_null(vs_opendirat(dfd, "file", 0));
	assert_int_equal(errno, ENOTDIR);
	assert_null(vs_opendirat(dfd, "link", O_NOFOLLOW));
	assert_int_equal(errno, ENOTDIR);
	int after = dup(0);
	close(after);
	assert_int_equal(after, before);

	/* Without O_NOFOLLOW the link is followed. */
	cleanup_closedir DIR *via = vs_opendirat(dfd, "link", 0);
	assert_non_null(via);
}

static void test_cleanup_strv(void **state)
{
	/* Leak-checked under make unit-asan. */
	cleanup_strv char **v = vs_xcalloc(3, sizeof(char *));
	v[0] = vs_xstrdup("a");
	v[1] = vs_xstrdup("b");
	cleanup_strv char **none = NULL;
	assert_string_equal(v[1], "b");
	assert_null(none);
}

/* Threads of one process (the node manager's migration jobs) replacing the
 * same file at once: each write must succeed and leave a whole file. The
 * temporary name was PATH.tmp.PID, shared by the threads: one's rename
 * found the file gone ("rename: No such file or directory"). */
#define REPLACERS 4
#define REPLACES  200
static void *replacer(void *arg)
{
	char *path = arg;
	static const char data[4096] = {[0] = 'v', [4095] = 's'};
	for (int i = 0; i < REPLACES; i++) {
		struct vs_error err;
		if (vs_write_file_replace(path, data, sizeof(data), 0600, false, &err) < 0)
			return (void *)1;
	}
	return NULL;
}

static void test_write_replace_threads(void **state)
{
	cleanup_free char *path = vs_xasprintf("%s/replaced", base);
	pthread_t t[REPLACERS];
	for (int i = 0; i < REPLACERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, replacer, path), 0);
	int failed = 0;
	for (int i = 0; i < REPLACERS; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		failed += rv != NULL;
	}
	assert_int_equal(failed, 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_opendirat),
	    cmocka_unit_test(test_cleanup_strv),
	    cmocka_unit_test(test_write_replace_threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/* Pieces of the sliver runtime that need no root: /proc parsing, exit records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "vslice/sliver.h"

/* Field 22 of /proc/self/stat, read the slow obvious way. */
static unsigned long long starttime_reference(void)
{
	FILE *f = fopen("/proc/self/stat", "r");
	char buf[1024];
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	char *p = strrchr(buf, ')') + 2; /* field 3 */
	unsigned long long v = 0;
	for (int field = 3; field <= 22; field++) {
		char *end = strchr(p, ' ');
		if (field == 22)
			v = strtoull(p, NULL, 10);
		p = end + 1;
	}
	return v;
}

static void test_starttime(void **state)
{
	assert_int_equal(sliver_proc_starttime(getpid()), starttime_reference());
	/* A comm with spaces and a ')' must not shift the fields. */
	prctl(PR_SET_NAME, "a) b c (d");
	assert_int_equal(sliver_proc_starttime(getpid()), starttime_reference());
	assert_int_equal(sliver_proc_starttime(999999999), 0);
}

static void test_exit_record(void **state)
{
	char path[] = "/tmp/vslice-exit.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int code;
	char reason[32];
	unsigned restarts;
	time_t fin;
	assert_int_not_equal(sliver_read_exit(fd, &code, reason, sizeof(reason), &restarts, &fin),
			     0);
	const char rec[] = "124 timeout 2 1795740000\n";
	assert_int_equal(pwrite(fd, rec, strlen(rec), 0), (ssize_t)strlen(rec));
	assert_int_equal(sliver_read_exit(fd, &code, reason, sizeof(reason), &restarts, &fin), 0);
	assert_int_equal(code, 124);
	assert_string_equal(reason, "timeout");
	assert_int_equal(restarts, 2);
	assert_int_equal(fin, 1795740000);
	const char bad[] = "999 exited 0 1\n";
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, bad, strlen(bad), 0), (ssize_t)strlen(bad));
	assert_int_not_equal(sliver_read_exit(fd, &code, reason, sizeof(reason), &restarts, &fin),
			     0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starttime),
	    cmocka_unit_test(test_exit_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Pieces of the sliver runtime that need no root: /proc parsing, exit records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vslice/reaper.h"
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

/*
 * PID 1's log (reaper.h): a workload writes 8 MiB into the pipe; the reaper
 * (a child here, not pid 1: with no deadline and no restart it never kills
 * anything but its workload's signals) copies it into a file capped at
 * 256 KiB on disk. All offsets stay, the tail is intact, the rest is a hole.
 */
#define LOG_TOTAL (8u << 20)
#define LOG_CAP	  (256u << 10)

static char log_byte(size_t i)
{
	return (char)('a' + (i * 7 + i / 4093) % 26);
}

static void test_reaper_log_cap(void **state)
{
	char path[] = "/tmp/vslice-test-log.XXXXXX";
	int lfd = mkstemp(path);
	assert_true(lfd >= 0);
	unlink(path);
	int fl = fcntl(lfd, F_GETFL);
	fcntl(lfd, F_SETFL, fl | O_APPEND);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t reaper = fork();
	assert_true(reaper >= 0);
	if (reaper == 0) {
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
		pid_t w = fork();
		if (w == 0) {
			close(p[0]);
			char buf[65536];
			for (size_t off = 0; off < LOG_TOTAL; off += sizeof(buf)) {
				for (size_t i = 0; i < sizeof(buf); i++)
					buf[i] = log_byte(off + i);
				if (write(p[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf))
					_exit(3);
			}
			_exit(0);
		}
		close(p[1]);
		struct reaper r = {
		    .exit_fd = -1,
		    .workload = w,
		    .log_in = p[0],
		    .log_fd = lfd,
		    .log_max = LOG_CAP,
		};
		reaper_run(&r);
	}
	close(p[0]);
	close(p[1]);
	int st;
	assert_int_equal(waitpid(reaper, &st, 0), reaper);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	struct stat sb;
	assert_int_equal(fstat(lfd, &sb), 0);
	/* Every byte counted: offsets never go back. */
	assert_int_equal(sb.st_size, LOG_TOTAL);
	/* On disk: the cap, plus at most one trimming step and a block. */
	assert_true((unsigned long long)sb.st_blocks * 512 <= LOG_CAP + LOG_CAP / 16 + 8192);
	off_t data = lseek(lfd, 0, SEEK_DATA);
	assert_true(data >= (off_t)(LOG_TOTAL - LOG_CAP - LOG_CAP / 16 - 4096));
	assert_true(data <= (off_t)(LOG_TOTAL - LOG_CAP));
	/* What is kept is the workload's last bytes, in order. */
	static char tail[LOG_CAP];
	assert_int_equal(pread(lfd, tail, LOG_CAP, LOG_TOTAL - LOG_CAP), LOG_CAP);
	for (size_t i = 0; i < LOG_CAP; i++)
		if (tail[i] != log_byte(LOG_TOTAL - LOG_CAP + i))
			fail_msg("byte %zu of the tail differs", i);
	close(lfd);
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
	    cmocka_unit_test(test_reaper_log_cap),
	    cmocka_unit_test(test_exit_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

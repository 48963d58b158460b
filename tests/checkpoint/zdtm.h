/*
 * zdtm.h - the tiny zdtm-style protocol every checkpoint test follows
 * (re-implemented, not CRIU's code): set up state, test_daemon() prints
 * READY, test_waitsig() blocks until SIGTERM (sent after the restore),
 * then the test verifies and calls pass() or fail().
 */
#ifndef ZDTM_H
#define ZDTM_H
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t zdtm_got_term;

static void zdtm_term(int s)
{
	(void)s;
	zdtm_got_term = 1;
}

static inline void test_init(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = zdtm_term;
	sigaction(SIGTERM, &sa, NULL);
}

static inline void test_daemon(void)
{
	printf("READY\n");
}

/* true until SIGTERM arrived */
static inline int test_go(void)
{
	return !zdtm_got_term;
}

static inline void test_waitsig(void)
{
	sigset_t m;
	sigprocmask(SIG_SETMASK, NULL, &m);
	sigdelset(&m, SIGTERM);
	while (!zdtm_got_term)
		sigsuspend(&m);
}

static inline void pass(void)
{
	printf("PASS\n");
	exit(0);
}

__attribute__((format(printf, 1, 2))) static inline void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf(" (errno %d %s)\n", errno, strerror(errno));
	va_end(ap);
	exit(1);
}

/* A /tmp name of this run alone: the standalone harness runs tests in a
 * PID namespace (getpid() is 2 in every run) on the host's /tmp, where a
 * fixed name left by the root pass (sticky /tmp) or by a run beside it would
 * make the next bind/mkfifo fail. Computed once, before the checkpoint. */
static inline void test_tmp_name(char *buf, size_t len, const char *stem)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	snprintf(buf, len, "/tmp/%s-%d-%lx%lx", stem, getpid(), (unsigned long)t.tv_nsec,
		 (unsigned long)getppid());
}

#define CHECK(cond, ...)                  \
	do {                              \
		if (!(cond))              \
			fail(__VA_ARGS__); \
	} while (0)
#endif

/* f_timerfd_pending: a repeating timerfd whose expiry was not read yet
 * keeps its interval and its pending ticks. */
#include <fcntl.h>
#include <sys/timerfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = { { 0, 50000000 }, { 0, 50000000 } };
	CHECK(timerfd_settime(t, 0, &its, NULL) == 0, "settime");
	/* one-shot, expired, unread: one tick pending, disarmed */
	int once = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec o = { { 0, 0 }, { 0, 1000000 } };
	CHECK(timerfd_settime(once, 0, &o, NULL) == 0, "settime once");
	usleep(300000); /* both expired, nothing read */
	test_daemon();
	test_waitsig();
	struct itimerspec cur;
	CHECK(timerfd_gettime(t, &cur) == 0, "gettime");
	CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 50000000,
	      "interval lost: %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	uint64_t n = 0;
	CHECK(read(t, &n, 8) == 8 && n >= 6, "pending ticks %lu (want >= 6)", (unsigned long)n);
	usleep(200000);
	CHECK(read(t, &n, 8) == 8 && n >= 1, "timer does not repeat after restore");
	CHECK(read(once, &n, 8) == 8 && n == 1, "one-shot tick %lu", (unsigned long)n);
	CHECK(timerfd_gettime(once, &cur) == 0 && cur.it_value.tv_sec == 0 &&
	      cur.it_value.tv_nsec == 0 && cur.it_interval.tv_nsec == 0, "one-shot re-armed");
	pass();
}

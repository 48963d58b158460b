/* timerfd: a periodic timerfd keeps ticking after restore. */
#include <fcntl.h>
#include <sys/timerfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = { { 0, 20000000 }, { 0, 20000000 } };
	CHECK(timerfd_settime(t, 0, &its, NULL) == 0, "settime");
	int once = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec o = { { 0, 0 }, { 3600, 0 } };
	timerfd_settime(once, 0, &o, NULL);
	test_daemon();
	test_waitsig();
	uint64_t n = 0;
	usleep(100000);
	CHECK(read(t, &n, 8) == 8 && n >= 1, "periodic timer did not tick (%lu)", (unsigned long)n);
	struct itimerspec cur;
	timerfd_gettime(once, &cur);
	CHECK(cur.it_value.tv_sec > 3500 && cur.it_value.tv_sec <= 3600, "one-shot remaining %ld", (long)cur.it_value.tv_sec);
	CHECK(fcntl(t, F_GETFL) & O_NONBLOCK, "nonblock");
	pass();
}

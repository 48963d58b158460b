/* posix_timers: timer ids, notification and values survive; a periodic
 * timer keeps firing. */
#include <time.h>
#include "zdtm.h"

static volatile int fired;
static volatile void *val;
static void h(int s, siginfo_t *si, void *uc)
{
	fired++;
	val = si->si_value.sival_ptr;
}

int main(void)
{
	test_init();
	struct sigaction sa = { .sa_sigaction = h, .sa_flags = SA_SIGINFO };
	sigaction(SIGRTMIN, &sa, NULL);
	timer_t t1, t2;
	struct sigevent se = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN,
			       .sigev_value.sival_ptr = (void *)0xabcd };
	CHECK(timer_create(CLOCK_MONOTONIC, &se, &t1) == 0, "timer_create");
	struct sigevent se2 = { .sigev_notify = SIGEV_NONE };
	CHECK(timer_create(CLOCK_REALTIME, &se2, &t2) == 0, "timer_create 2");
	struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } };
	timer_settime(t1, 0, &its, NULL);
	struct itimerspec long_ = { { 0, 0 }, { 1000, 0 } };
	timer_settime(t2, 0, &long_, NULL);
	test_daemon();
	test_waitsig();
	int before = fired;
	usleep(100000);
	CHECK(fired > before && val == (void *)0xabcd, "periodic timer %d->%d val %p", before, fired, val);
	struct itimerspec cur;
	CHECK(timer_gettime(t2, &cur) == 0 && cur.it_value.tv_sec > 900, "timer 2 value %ld", (long)cur.it_value.tv_sec);
	pass();
}

/* itimer: ITIMER_REAL keeps firing SIGALRM after restore. */
#include <sys/time.h>
#include "zdtm.h"

static volatile int alarms;
static void h(int s) { alarms++; }

int main(void)
{
	test_init();
	signal(SIGALRM, h);
	struct itimerval it = { { 0, 10000 }, { 0, 10000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct itimerval virt = { { 100, 0 }, { 100, 0 } };
	setitimer(ITIMER_VIRTUAL, &virt, NULL);
	test_daemon();
	test_waitsig();
	int before = alarms;
	usleep(100000);
	CHECK(alarms > before, "no SIGALRM after restore (%d)", alarms);
	struct itimerval cur;
	getitimer(ITIMER_VIRTUAL, &cur);
	CHECK(cur.it_interval.tv_sec == 100 && cur.it_value.tv_sec > 90, "virtual timer");
	pass();
}

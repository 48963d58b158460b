/* vdso_clock: clock_gettime through the vDSO works after restore, and the
 * monotonic/boot clocks continue (never backwards, no big jump). */
#include <time.h>
#include <sys/auxv.h>
#include "zdtm.h"

static long long ns(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec * 1000000000ll + t.tv_nsec;
}

int main(void)
{
	test_init();
	CHECK(getauxval(AT_SYSINFO_EHDR) != 0, "no vdso");
	long long last = ns(CLOCK_MONOTONIC), lastb = ns(CLOCK_BOOTTIME), maxjump = 0;
	test_daemon();
	while (test_go()) {
		long long now = ns(CLOCK_MONOTONIC), nb = ns(CLOCK_BOOTTIME);
		CHECK(now >= last, "monotonic went backwards by %lld ns", last - now);
		CHECK(nb >= lastb, "boottime went backwards");
		if (now - last > maxjump)
			maxjump = now - last;
		last = now;
		lastb = nb;
	}
	/* the gap covers only the frozen time of the dump + restore */
	CHECK(maxjump < 5000000000ll, "monotonic jumped %lld ms", maxjump / 1000000);
	printf("max monotonic gap %lld ms\n", maxjump / 1000000);
	pass();
}

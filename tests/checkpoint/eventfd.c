/* eventfd: counter value and semaphore mode survive. */
#include <sys/eventfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int e = eventfd(0, EFD_NONBLOCK), s = eventfd(3, EFD_SEMAPHORE);
	uint64_t v = 41;
	CHECK(write(e, &v, 8) == 8, "write");
	test_daemon();
	test_waitsig();
	CHECK(read(e, &v, 8) == 8 && v == 41, "eventfd value %lu", (unsigned long)v);
	CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "nonblock");
	CHECK(read(s, &v, 8) == 8 && v == 1, "semaphore mode");
	pass();
}

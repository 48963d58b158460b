/* sleeping: stopped inside nanosleep; the syscall restarts after restore. */
#include <time.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	test_daemon();
	struct timespec ts = { 3600, 0 }, rem;
	int r = nanosleep(&ts, &rem);
	CHECK(r == -1 && errno == EINTR, "nanosleep returned %d", r);
	CHECK(zdtm_got_term, "woken without SIGTERM");
	pass();
}

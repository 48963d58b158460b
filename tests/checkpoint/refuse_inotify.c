/* refuse_inotify: a checkpoint of a process holding an inotify fd is
 * refused up front and the process runs on untouched (driver uses -r). */
#include <sys/inotify.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int fd = inotify_init1(0);
	CHECK(fd >= 0, "inotify");
	test_daemon();
	unsigned long n = 0;
	while (test_go())
		n++;
	CHECK(n > 0, "loop");
	pass();
}

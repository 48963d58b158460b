/* refuse_inotify: a checkpoint of a process whose inotify fd holds unread
 * events (which cannot be read back without consuming them) is refused up
 * front and the process runs on untouched (driver uses -r). */
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char dir[] = "/tmp/ckpt-rino-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	int fd = inotify_init1(0);
	CHECK(fd >= 0 && inotify_add_watch(fd, dir, IN_CREATE) > 0, "inotify");
	char p[64];
	snprintf(p, sizeof(p), "%s/f", dir);
	int f = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(f >= 0, "create");
	close(f);
	test_daemon();
	unsigned long n = 0;
	while (test_go())
		n++;
	CHECK(n > 0, "loop");
	unlink(p);
	rmdir(dir);
	pass();
}

/* f_refuse_unix_dir: a unix socket bound in a directory that was removed
 * since cannot be bound again: the checkpoint is refused up front and the
 * process runs on (driver uses -r). */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char dir[] = "/tmp/ckpt-udir-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(bind(s, (void *)&sa, sizeof(sa)) == 0, "bind");
	CHECK(unlink(sa.sun_path) == 0 && rmdir(dir) == 0, "remove");
	test_daemon();
	unsigned long n = 0;
	while (test_go())
		n++;
	CHECK(n > 0, "loop");
	pass();
}

/* devices: /dev/null, /dev/zero, /dev/urandom fds keep working. */
#include <fcntl.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int n = open("/dev/null", O_RDWR), z = open("/dev/zero", O_RDONLY), u = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
	CHECK(n >= 0 && z >= 0 && u >= 0, "open");
	test_daemon();
	test_waitsig();
	char b[16];
	CHECK(write(n, "x", 1) == 1 && read(n, b, 1) == 0, "/dev/null");
	CHECK(read(z, b, 16) == 16 && b[3] == 0, "/dev/zero");
	CHECK(read(u, b, 16) == 16, "/dev/urandom");
	CHECK(fcntl(u, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
	CHECK((fcntl(z, F_GETFL) & O_ACCMODE) == O_RDONLY, "access mode");
	pass();
}

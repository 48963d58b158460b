/* fifo: a named pipe open for reading and writing with data inside. */
#include <fcntl.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char path[64];
	test_tmp_name(path, sizeof(path), "ckpt-fifo");
	unlink(path);
	CHECK(mkfifo(path, 0600) == 0, "mkfifo");
	int r = open(path, O_RDONLY | O_NONBLOCK);
	int w = open(path, O_WRONLY);
	CHECK(r >= 0 && w >= 0, "open fifo");
	CHECK(write(w, "fifo-data", 9) == 9, "write");
	test_daemon();
	test_waitsig();
	char b[16] = "";
	CHECK(read(r, b, 16) == 9 && !memcmp(b, "fifo-data", 9), "fifo data '%s'", b);
	CHECK(write(w, "x", 1) == 1 && read(r, b, 1) == 1 && b[0] == 'x', "fifo still connected");
	unlink(path);
	pass();
}

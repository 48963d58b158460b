/* file_offset: regular files keep offset, access mode and O_APPEND; a file
 * shared between dup'ed fds and a child keeps one shared offset. */
#include <fcntl.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char path[] = "/tmp/ckpt-fo-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	CHECK(write(fd, "0123456789abcdef", 16) == 16, "write");
	lseek(fd, 5, SEEK_SET);
	int dupfd = dup(fd);
	int ro = open(path, O_RDONLY);
	lseek(ro, 3, SEEK_SET);
	int ap = open(path, O_WRONLY | O_APPEND);
	test_daemon();
	test_waitsig();
	CHECK(lseek(fd, 0, SEEK_CUR) == 5, "offset %ld", (long)lseek(fd, 0, SEEK_CUR));
	CHECK(lseek(ro, 0, SEEK_CUR) == 3, "ro offset");
	CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "ro mode");
	CHECK(fcntl(ap, F_GETFL) & O_APPEND, "O_APPEND lost");
	CHECK(write(ap, "Z", 1) == 1, "append write");
	lseek(dupfd, 7, SEEK_SET);
	CHECK(lseek(fd, 0, SEEK_CUR) == 7, "dup no longer shares the offset");
	char c;
	CHECK(pread(ro, &c, 1, 16) == 1 && c == 'Z', "append did not append");
	unlink(path);
	pass();
}

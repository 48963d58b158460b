/* unlinked: an open, unlinked file keeps content, size and offset. */
#include <fcntl.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char path[] = "/tmp/ckpt-ul-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	char buf[10000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i % 251);
	CHECK(write(fd, buf, sizeof(buf)) == sizeof(buf), "write");
	unlink(path);
	lseek(fd, 1234, SEEK_SET);
	test_daemon();
	test_waitsig();
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && st.st_size == sizeof(buf), "size %ld", (long)st.st_size);
	CHECK(st.st_nlink == 0, "file is linked again");
	CHECK(lseek(fd, 0, SEEK_CUR) == 1234, "offset");
	char back[sizeof(buf)];
	CHECK(pread(fd, back, sizeof(back), 0) == sizeof(back) && !memcmp(back, buf, sizeof(buf)), "content");
	pass();
}

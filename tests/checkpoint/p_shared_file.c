/* p_shared_file: MAP_SHARED of a regular file (SQLite's WAL index, LMDB)
 * shared by a parent and its child: after the restore both map the same
 * file again, see what was written before, and see each other's writes. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char path[64];
	test_tmp_name(path, sizeof(path), "ckpt-shared-file");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 8192) == 0, "create %s", path);
	char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap");
	close(fd);
	strcpy(m, "written before the checkpoint");
	int go[2], done[2];
	CHECK(pipe(go) == 0 && pipe(done) == 0, "pipes");
	pid_t c = fork();
	if (c == 0) {
		char b;
		if (read(go[0], &b, 1) != 1)
			_exit(1);
		strcpy(m + 4096, "child after restore");
		if (write(done[1], "x", 1) != 1)
			_exit(1);
		_exit(strcmp(m, "written before the checkpoint") == 0 ? 0 : 2);
	}
	test_daemon();
	test_waitsig();
	CHECK(strcmp(m, "written before the checkpoint") == 0, "content: '%.40s'", m);
	CHECK(write(go[1], "x", 1) == 1, "go");
	char b;
	CHECK(read(done[0], &b, 1) == 1, "child done");
	CHECK(strcmp(m + 4096, "child after restore") == 0, "child's write not seen: '%.40s'",
	      m + 4096);
	fd = open(path, O_RDONLY);
	char buf[64] = {0};
	CHECK(pread(fd, buf, sizeof(buf) - 1, 4096) > 0 && strcmp(buf, "child after restore") == 0,
	      "file: '%s'", buf);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	unlink(path);
	pass();
}

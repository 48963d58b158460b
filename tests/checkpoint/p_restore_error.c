/* p_restore_error: a restore that cannot be done says why. A child maps a
 * file that is removed between checkpoint and restore (opts: -x rm); the
 * restore must fail with the child stub's own reason ("open mapped file
 * ...: No such file"), not "stub for pid N died". */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	const char *path = "/tmp/ckpt-p-restore-error-map";
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "create %s", path);
	pid_t c = fork();
	if (c == 0) {
		char *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (m == MAP_FAILED)
			_exit(1);
		test_waitsig();
		_exit(0);
	}
	close(fd);
	usleep(100000);
	test_daemon();
	test_waitsig();
	kill(c, SIGTERM);
	waitpid(c, NULL, 0);
	unlink(path);
	pass();
}

/* f_locks: POSIX (fcntl), OFD and flock locks survive a checkpoint with
 * their owners: a POSIX lock stays its process's (others see it with that
 * pid; a child holds one of its own on a file it inherited), the OFD and
 * flock locks stay their open file's. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include "zdtm.h"

static int mk(char *path)
{
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	CHECK(write(fd, "0123456789abcdef", 16) == 16, "write");
	return fd;
}

/* In a fresh process: the lock that blocks type at [start, start+len) of path. */
static int probe(const char *path, int type, off_t start, off_t len, pid_t *pid)
{
	int fd = open(path, O_RDWR);
	struct flock fl = { .l_type = (short)type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fd < 0 || fcntl(fd, F_GETLK, &fl) < 0)
		return -1;
	close(fd);
	*pid = fl.l_pid;
	return fl.l_type;
}

int main(void)
{
	test_init();
	char pa[] = "/tmp/ckpt-lk-posix-XXXXXX", pb[] = "/tmp/ckpt-lk-ofd-XXXXXX",
	     pc[] = "/tmp/ckpt-lk-flock-XXXXXX";
	int a = mk(pa), b = mk(pb), c = mk(pc);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 20 };
	CHECK(fcntl(a, F_SETLK, &fl) == 0, "posix write lock");
	fl.l_type = F_RDLCK;
	fl.l_start = 100;
	fl.l_len = 0;
	CHECK(fcntl(a, F_SETLK, &fl) == 0, "posix read lock to EOF");
	struct flock ofd = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 7 };
	CHECK(fcntl(b, F_OFD_SETLK, &ofd) == 0, "ofd lock");
	CHECK(flock(c, LOCK_EX) == 0, "flock");
	int c2 = dup(c); /* the flock belongs to the open file, shared by the dup */
	char pd[] = "/tmp/ckpt-lk-child-XXXXXX";
	int d = mk(pd);
	int ready[2];
	CHECK(pipe(ready) == 0, "pipe");
	pid_t kid = fork();
	if (kid == 0) {
		struct flock k = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4 };
		if (fcntl(d, F_SETLK, &k) < 0)
			_exit(1);
		if (write(ready[1], "k", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char k;
	CHECK(read(ready[0], &k, 1) == 1, "child lock");
	test_daemon();
	test_waitsig();
	pid_t me = getpid();
	pid_t ch = fork();
	if (ch == 0) {
		pid_t who = 0;
		int t = probe(pa, F_WRLCK, 15, 1, &who);
		if (t != F_WRLCK || who != me) {
			printf("FAIL: posix lock [10,30) gone: type %d pid %d (want %d)\n", t, who, me);
			_exit(1);
		}
		if ((t = probe(pa, F_WRLCK, 40, 10, &who)) != F_UNLCK) {
			printf("FAIL: a lock appeared at [40,50): type %d\n", t);
			_exit(1);
		}
		if ((t = probe(pa, F_WRLCK, 5000, 1, &who)) != F_RDLCK || who != me) {
			printf("FAIL: posix read lock [100,EOF) gone: type %d pid %d\n", t, who);
			_exit(1);
		}
		if ((t = probe(pa, F_RDLCK, 200, 1, &who)) != F_UNLCK) {
			printf("FAIL: read lock became a write lock\n");
			_exit(1);
		}
		int fb = open(pb, O_RDWR);
		struct flock q = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 6, .l_len = 1 };
		if (fcntl(fb, F_OFD_GETLK, &q) < 0 || q.l_type != F_WRLCK || q.l_start != 5 ||
		    q.l_len != 7) {
			printf("FAIL: ofd lock gone (type %d start %ld len %ld)\n", q.l_type,
			       (long)q.l_start, (long)q.l_len);
			_exit(1);
		}
		int fc = open(pc, O_RDWR);
		if (flock(fc, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
			printf("FAIL: flock gone\n");
			_exit(1);
		}
		_exit(0);
	}
	int st;
	CHECK(waitpid(ch, &st, 0) == ch && WIFEXITED(st) && WEXITSTATUS(st) == 0, "probe child");
	/* the child's lock is the child's: we see it with its pid */
	struct flock q = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 2, .l_len = 1 };
	CHECK(fcntl(d, F_GETLK, &q) == 0 && q.l_type == F_WRLCK && q.l_pid == kid,
	      "child's lock: type %d pid %d (want %d)", q.l_type, q.l_pid, kid);
	kill(kid, SIGKILL);
	waitpid(kid, &st, 0);
	q.l_type = F_RDLCK;
	CHECK(fcntl(d, F_GETLK, &q) == 0 && q.l_type == F_UNLCK, "child's lock outlived it");
	/* ours: the OFD lock is still held through b (a conflicting OFD lock
	 * from another open file fails), and unlocking the flock via the dup works */
	int b2 = open(pb, O_RDWR);
	struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	CHECK(fcntl(b2, F_OFD_SETLK, &w) < 0 && errno == EAGAIN, "ofd lock not held");
	CHECK(flock(c2, LOCK_UN) == 0, "unlock flock");
	int c3 = open(pc, O_RDWR);
	CHECK(flock(c3, LOCK_EX | LOCK_NB) == 0, "flock still held after LOCK_UN through the dup");
	unlink(pa);
	unlink(pb);
	unlink(pc);
	unlink(pd);
	pass();
}

/* f_inotify: an inotify fd keeps its watches - by path, with their masks
 * and their watch descriptors (including a gap left by a removed watch) -
 * and reports events on them after restore. */
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include "zdtm.h"

static int next_event(int fd, struct inotify_event *ev, char *name, size_t nlen)
{
	char buf[4096] __attribute__((aligned(8)));
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < (ssize_t)sizeof(*ev))
		return -1;
	memcpy(ev, buf, sizeof(*ev));
	if (name && nlen) {
		name[0] = 0;
		if (ev->len)
			snprintf(name, nlen, "%s", buf + sizeof(*ev));
	}
	return 0;
}

int main(void)
{
	test_init();
	char dir[] = "/tmp/ckpt-ino-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char file[64], other[64];
	snprintf(file, sizeof(file), "%s/conf", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	int f = open(file, O_CREAT | O_WRONLY, 0644);
	CHECK(f >= 0 && close(f) == 0, "create conf");
	CHECK(mkdir(other, 0755) == 0, "mkdir other");
	int in = inotify_init1(IN_NONBLOCK);
	CHECK(in >= 0, "inotify_init1");
	int wdir = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
	int gap = inotify_add_watch(in, other, IN_ATTRIB);
	int wfile = inotify_add_watch(in, file, IN_MODIFY | IN_EXCL_UNLINK);
	CHECK(wdir > 0 && gap > wdir && wfile > gap, "add watches %d %d %d", wdir, gap, wfile);
	CHECK(inotify_rm_watch(in, gap) == 0, "rm watch");
	struct inotify_event ev;
	CHECK(next_event(in, &ev, NULL, 0) == 0 && (ev.mask & IN_IGNORED), "IN_IGNORED");
	test_daemon();
	test_waitsig();
	char name[64];
	CHECK(read(in, name, sizeof(name)) < 0 && errno == EAGAIN, "events appeared after restore");
	CHECK(fcntl(in, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
	char newf[80];
	snprintf(newf, sizeof(newf), "%s/new", dir);
	f = open(newf, O_CREAT | O_WRONLY, 0644);
	CHECK(f >= 0, "create new");
	close(f);
	CHECK(next_event(in, &ev, name, sizeof(name)) == 0, "no event for create");
	CHECK(ev.wd == wdir && (ev.mask & IN_CREATE) && !strcmp(name, "new"), "create event wd %d mask %#x name %s (want wd %d)", ev.wd, ev.mask, name, wdir);
	f = open(file, O_WRONLY);
	CHECK(f >= 0 && write(f, "x", 1) == 1, "modify conf");
	close(f);
	CHECK(next_event(in, &ev, NULL, 0) == 0 && ev.wd == wfile && (ev.mask & IN_MODIFY), "modify event wd %d mask %#x (want wd %d)", ev.wd, ev.mask, wfile);
	CHECK(inotify_rm_watch(in, gap) < 0 && errno == EINVAL, "removed watch is back");
	CHECK(inotify_add_watch(in, dir, IN_CREATE | IN_DELETE) == wdir, "watch descriptor changed");
	unlink(newf);
	unlink(file);
	rmdir(other);
	rmdir(dir);
	pass();
}

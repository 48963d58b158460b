/* refuse_vfork: a vfork child shares its parent's address space; the
 * checkpoint is refused and both run on (driver uses -r).
 *
 * The child lives until the driver's SIGTERM, not for a fixed time: the
 * refusal needs it alive when the checkpoint looks, however late that is on
 * a loaded machine (3 s once ran out before a checkpoint came). The driver
 * signals the parent (the harness) or the slice (slicectl kill): the child
 * watches the suspended parent's pending signals and ends on a signal of its
 * own. Only async-signal-safe calls in the child. */
#include <fcntl.h>
#include <sys/wait.h>
#include "zdtm.h"

/* /proc/PID/status (pid 0: self) into buf; 0 on failure. */
static ssize_t read_status(pid_t pid, char *buf, size_t size)
{
	char path[40] = "/proc/", digits[12];
	int n = 0, k = 6;
	for (pid_t p = pid; p > 0 && n < 11; p /= 10)
		digits[n++] = (char)('0' + p % 10);
	if (pid == 0)
		for (const char *w = "self"; *w; w++)
			path[k++] = *w;
	while (n > 0)
		path[k++] = digits[--n];
	for (const char *w = "/status"; *w; w++)
		path[k++] = *w;
	path[k] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t len = read(fd, buf, size - 1);
	close(fd);
	if (len <= 0)
		return 0;
	buf[len] = '\0';
	return len;
}

/* The value of field NAME ("PPid:", "ShdPnd:") in a status text, in base. */
static unsigned long long field(const char *buf, const char *name, unsigned base)
{
	for (const char *s = buf; *s; s++) {
		if (s != buf && s[-1] != '\n')
			continue;
		int i = 0;
		while (name[i] && s[i] == name[i])
			i++;
		if (name[i])
			continue;
		unsigned long long v = 0;
		for (const char *h = s + i; *h && *h != '\n'; h++) {
			if (*h >= '0' && *h <= '9')
				v = v * base + (unsigned)(*h - '0');
			else if (base == 16 && *h >= 'a' && *h <= 'f')
				v = v * base + (unsigned)(*h - 'a' + 10);
		}
		return v;
	}
	return 0;
}

/* SIGTERM pending on our parent (named through our own status: /proc may
 * be the host's, not our pid namespace's). */
static int parent_term_pending(void)
{
	char buf[2048];
	if (!read_status(0, buf, sizeof(buf)))
		return 0;
	pid_t ppid = (pid_t)field(buf, "PPid:", 10);
	if (ppid <= 0 || !read_status(ppid, buf, sizeof(buf)))
		return 0;
	unsigned long long bit = 1ull << (SIGTERM - 1);
	return (field(buf, "ShdPnd:", 16) & bit) || (field(buf, "SigPnd:", 16) & bit);
}

int main(void)
{
	test_init();
	test_daemon();
	pid_t c = vfork();
	if (c == 0) {
		/* up to 60 s: long past the driver's own time-outs */
		for (int i = 0; i < 600 && !parent_term_pending(); i++) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			if (nanosleep(&ts, NULL) < 0)
				break; /* a signal of our own: the driver is done */
		}
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	test_waitsig();
	pass();
}

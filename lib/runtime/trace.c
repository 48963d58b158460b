/*
 * trace.c - VSLICE_TRACE=1: one stderr line per phase of a start (trace.h).
 *
 * The line is formatted by hand and written with one write(2): it is called
 * from the launcher and PID 1 between fork and exec, where stdio buffers
 * would be duplicated or lost, and from a process that may be about to
 * call seccomp or execve.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vslice/trace.h"

int vs_trace_on = -1;

static char *put_u64(char *p, unsigned long long v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

void vs_trace_emit(const char *label)
{
	if (vs_trace_on < 0) {
		const char *e = getenv("VSLICE_TRACE");
		vs_trace_on = e && *e && strcmp(e, "0") != 0;
	}
	if (!vs_trace_on)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long us =
	    (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
	char line[160], *p = line;
	memcpy(p, "vslice-trace ", 13);
	p += 13;
	p = put_u64(p, (unsigned long long)getpid());
	*p++ = ' ';
	p = put_u64(p, us / 1000);
	*p++ = '.';
	unsigned long long frac = us % 1000;
	*p++ = (char)('0' + frac / 100);
	*p++ = (char)('0' + frac / 10 % 10);
	*p++ = (char)('0' + frac % 10);
	*p++ = ' ';
	size_t n = strnlen(label, sizeof(line) - (size_t)(p - line) - 2);
	memcpy(p, label, n);
	p += n;
	*p++ = '\n';
	(void)!write(2, line, (size_t)(p - line));
}

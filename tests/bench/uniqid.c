/* uniqid: exec ARGV with every "@ID@" replaced by an id unique to this run
 * (pid + nanoseconds), so each `runc run` gets a fresh container id without a
 * shell in between. Its own cost is measured as a separate hyperfine row.
 *   uniqid runc --root R run --bundle B bench-@ID@ */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: uniqid CMD ARG... (\"@ID@\" in an ARG becomes a unique id)\n");
		return 125;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char id[64];
	snprintf(id, sizeof id, "%d-%ld%09ld", (int)getpid(), (long)ts.tv_sec, ts.tv_nsec);
	static char buf[64][256];
	for (int i = 1; i < argc && i < 64; i++) {
		char *at = strstr(argv[i], "@ID@");
		if (!at)
			continue;
		snprintf(buf[i], sizeof buf[i], "%.*s%s%s", (int)(at - argv[i]), argv[i], id, at + 4);
		argv[i] = buf[i];
	}
	execvp(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}

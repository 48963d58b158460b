/*
 * asuser - run a checkpoint test program as an ordinary user, the way most
 * services run: supplementary groups 1001 and 1002, a bounding set without
 * CAP_SYS_MODULE/CAP_SYS_RAWIO/CAP_MKNOD, then gid and uid 1000 (which drops
 * every capability), then exec. The program's pid is the one the harness
 * started (exec keeps it).
 *
 * Usage: asuser PROG [ARGS...]   (static: it also runs inside slices)
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <linux/capability.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: asuser PROG [ARGS...]\n");
		return 2;
	}
	static const int drop[] = {CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_MKNOD};
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0) < 0) {
			fprintf(stderr, "asuser: drop bounding cap %d: %s\n", drop[i],
				strerror(errno));
			return 2;
		}
	gid_t groups[2] = {1001, 1002};
	if (setgroups(2, groups) < 0 || setresgid(1000, 1000, 1000) < 0 ||
	    setresuid(1000, 1000, 1000) < 0) {
		fprintf(stderr, "asuser: become uid 1000: %s\n", strerror(errno));
		return 2;
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "asuser: exec %s: %s\n", argv[1], strerror(errno));
	return 127;
}

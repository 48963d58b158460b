/* p_nonroot: a process that is not root comes back with its credentials:
 * uids/gids, supplementary groups, a reduced bounding set, one kept
 * capability (permitted, effective, inheritable, ambient), securebits -
 * and the same in its second thread (credentials are per thread). Run as
 * root it drops to uid 1000 itself; run by the non-root pass it keeps what
 * it was given. */
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <grp.h>
#include "zdtm.h"

static void creds(const char *status, char *out, size_t len)
{
	FILE *f = fopen(status, "r");
	char line[256];
	size_t n = 0;
	out[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) ||
		    !strncmp(line, "Groups:", 7) || !strncmp(line, "Cap", 3) ||
		    !strncmp(line, "NoNewPrivs:", 11))
			n += snprintf(out + n, len - n, "%s", line);
	if (f)
		fclose(f);
	n += snprintf(out + n, len - n, "securebits %d\n", prctl(PR_GET_SECUREBITS));
}

static char thr_before[2048], thr_after[2048];
static volatile int thr_go, thr_done;

static void *thread_main(void *arg)
{
	creds("/proc/thread-self/status", thr_before, sizeof(thr_before));
	while (!thr_go)
		usleep(1000);
	creds("/proc/thread-self/status", thr_after, sizeof(thr_after));
	thr_done = 1;
	return NULL;
}

int main(void)
{
	test_init();
	if (geteuid() == 0) {
		CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE) == 0, "drop bounding cap");
		CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_RAWIO) == 0, "drop bounding cap");
		gid_t g[2] = {1001, 1002};
		CHECK(setgroups(2, g) == 0, "setgroups");
		CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0, "keepcaps");
		CHECK(setresgid(1000, 1000, 1000) == 0 && setresuid(1000, 1000, 1000) == 0,
		      "setres*id");
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		uint32_t c = 1u << CAP_NET_BIND_SERVICE;
		struct __user_cap_data_struct d[2] = {{c, c, c}, {0, 0, 0}};
		CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
		CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0,
		      "ambient");
	}
	CHECK(geteuid() != 0, "still root");
	pthread_t t;
	CHECK(pthread_create(&t, NULL, thread_main, NULL) == 0, "thread");
	while (!thr_before[0])
		usleep(1000);
	char before[2048], after[2048];
	creds("/proc/self/status", before, sizeof(before));
	test_daemon();
	test_waitsig();
	creds("/proc/self/status", after, sizeof(after));
	CHECK(strcmp(before, after) == 0, "creds changed:\n--- before\n%s--- after\n%s", before,
	      after);
	thr_go = 1;
	while (!thr_done)
		usleep(1000);
	CHECK(strcmp(thr_before, thr_after) == 0,
	      "thread creds changed:\n--- before\n%s--- after\n%s", thr_before, thr_after);
	pass();
}

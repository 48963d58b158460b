/* p_refuse_thread_creds: a thread that changed its own credentials with a
 * raw syscall (glibc's setresuid() would change every thread) cannot be
 * restored as it is (credentials are dumped per process), so the checkpoint
 * is refused before anything is stopped and the process runs on (driver
 * uses -r). Root only: an unprivileged thread cannot change its own. */
#include <pthread.h>
#include <sys/syscall.h>
#include "zdtm.h"

static volatile int changed;

static void *thread_main(void *arg)
{
	/* drop the saved uid only in this thread: raw syscall, no broadcast */
	changed = syscall(SYS_setresuid, 0, 0, 1234) == 0 ? 1 : -1;
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	test_init();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, thread_main, NULL) == 0, "pthread_create");
	while (!changed)
		usleep(1000);
	CHECK(changed == 1, "setresuid in the thread");
	test_daemon();
	test_waitsig();
	pass();
}

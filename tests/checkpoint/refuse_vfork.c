/* refuse_vfork: a vfork child shares its parent's address space; the
 * checkpoint is refused and both run on (driver uses -r). */
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	test_daemon();
	pid_t c = vfork();
	if (c == 0) {
		/* only async-signal-safe calls here: wait for the SIGTERM the
		 * driver sends to the whole group? it sends it to us, the parent,
		 * which is suspended - so just sleep, then exit */
		struct timespec ts = { 3, 0 };
		nanosleep(&ts, NULL);
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	test_waitsig();
	pass();
}

/* signalfd: mask kept; a signal pending at dump is read after restore. */
#include <sys/signalfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, NULL);
	int fd = signalfd(-1, &m, SFD_NONBLOCK);
	CHECK(fd >= 0, "signalfd");
	kill(getpid(), SIGUSR2);
	test_daemon();
	test_waitsig();
	struct signalfd_siginfo si;
	CHECK(read(fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2, "pending SIGUSR2 via signalfd");
	kill(getpid(), SIGUSR1);
	CHECK(read(fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR1, "mask");
	pass();
}

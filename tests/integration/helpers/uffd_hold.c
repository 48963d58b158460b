/* uffd_hold: make a userfaultfd and keep it open (fd number printed), then
 * sleep: a process that uses userfaultfd itself, which a pre-copy must
 * refuse up front (tests/integration/test_precopy.sh). Needs a seccomp
 * policy that allows userfaultfd (--policy unconfined). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	if (fd < 0) {
		perror("userfaultfd");
		return 1;
	}
	printf("READY fd %d\n", fd);
	fflush(stdout);
	for (;;)
		pause();
}

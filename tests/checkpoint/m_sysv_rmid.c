/* m_sysv_rmid: a SysV segment removed (IPC_RMID) while still attached has
 * no id to attach again by: the checkpoint fails, naming it, and the
 * process runs on (driver uses -r). */
#include <sys/ipc.h>
#include <sys/shm.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int b = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	CHECK(b >= 0, "shmget");
	char *r = shmat(b, NULL, 0);
	CHECK(r != (void *)-1, "shmat");
	CHECK(shmctl(b, IPC_RMID, NULL) == 0, "IPC_RMID");
	strcpy(r, "removed");
	test_daemon();
	test_waitsig();
	CHECK(!strcmp(r, "removed"), "content");
	shmdt(r);
	pass();
}

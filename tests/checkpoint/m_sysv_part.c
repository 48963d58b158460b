/* m_sysv_part: a SysV attach with part of it unmapped cannot be made again
 * with one shmat(): the checkpoint fails, naming it, and the process runs
 * on (driver uses -r). Whole attaches are restored: m_sysv_attach. */
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	long pg = sysconf(_SC_PAGESIZE);
	int a = shmget(IPC_PRIVATE, 4 * pg, IPC_CREAT | 0600);
	CHECK(a >= 0, "shmget");
	char *m = shmat(a, NULL, 0);
	CHECK(m != (void *)-1, "shmat");
	CHECK(munmap(m + 3 * pg, pg) == 0, "munmap the last page");
	strcpy(m, "partly");
	test_daemon();
	test_waitsig();
	CHECK(!strcmp(m, "partly"), "content");
	shmdt(m);
	shmctl(a, IPC_RMID, NULL);
	pass();
}

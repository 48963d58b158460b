/* refuse_sysv: SysV semaphore undo state (SEM_UNDO), which cannot be read
 * back, makes the checkpoint fail before anything is stopped; the process
 * runs on (driver uses -r). SysV objects themselves are restored: f_sysv. */
#include <sys/ipc.h>
#include <sys/sem.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	CHECK(s >= 0, "semget");
	struct sembuf op = { .sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO };
	CHECK(semop(s, &op, 1) == 0, "semop SEM_UNDO");
	test_daemon();
	test_waitsig();
	CHECK(semctl(s, 0, GETVAL) == 1, "value");
	semctl(s, 0, IPC_RMID);
	pass();
}

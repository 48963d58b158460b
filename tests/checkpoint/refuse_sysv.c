/* refuse_sysv: SysV IPC objects in the namespace make the checkpoint fail
 * before anything is stopped. */
#include <sys/ipc.h>
#include <sys/msg.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	CHECK(q >= 0, "msgget");
	test_daemon();
	test_waitsig();
	msgctl(q, IPC_RMID, NULL);
	pass();
}

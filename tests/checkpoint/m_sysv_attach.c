/* m_sysv_attach: SysV shared memory attached by processes comes back
 * attached at the same addresses with the same protection: a read-write
 * attach in the parent, a read-only one there too, both inherited by a
 * child; writes through one attach are seen through the others (and by the
 * child), the kernel counts every attach (shm_nattch) and shmdt() takes
 * them. */
#include <signal.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include "zdtm.h"

#define SHMSZ (20 << 10) /* 5 pages */

static volatile sig_atomic_t child_go;
static void on_usr1(int s) { child_go = 1; }

int main(void)
{
	test_init();
	int shm = shmget(IPC_PRIVATE, SHMSZ, IPC_CREAT | 0600);
	CHECK(shm >= 0, "shmget");
	char *rw = shmat(shm, NULL, 0);
	char *ro = shmat(shm, NULL, SHM_RDONLY);
	CHECK(rw != (void *)-1 && ro != (void *)-1, "shmat");
	strcpy(rw, "before");
	strcpy(rw + SHMSZ - 8, "end");
	int pfd[2];
	CHECK(pipe(pfd) == 0, "pipe");
	signal(SIGUSR1, on_usr1);
	pid_t c = fork();
	if (c == 0) {
		/* the child: waits for the parent's word through the inherited attach */
		close(pfd[0]);
		while (!child_go)
			pause();
		char ok = !strcmp(rw, "after restore") ? 'y' : 'n';
		strcpy(rw + 100, "from the child");
		write(pfd[1], &ok, 1);
		_exit(0);
	}
	close(pfd[1]);
	struct shmid_ds ds;
	CHECK(shmctl(shm, IPC_STAT, &ds) == 0 && ds.shm_nattch == 4, "nattch before %lu",
	      (unsigned long)ds.shm_nattch);
	test_daemon();
	test_waitsig();
	CHECK(!strcmp(rw, "before") && !strcmp(ro, "before") && !strcmp(rw + SHMSZ - 8, "end"),
	      "content: %s / %s", rw, ro);
	CHECK(shmctl(shm, IPC_STAT, &ds) == 0, "IPC_STAT");
	CHECK(ds.shm_nattch == 4, "nattch after restore %lu, want 4", (unsigned long)ds.shm_nattch);
	strcpy(rw, "after restore");
	CHECK(!strcmp(ro, "after restore"), "write through one attach not seen through the other");
	kill(c, SIGUSR1);
	char ok = 0;
	CHECK(read(pfd[0], &ok, 1) == 1 && ok == 'y', "the child does not see the parent's write");
	CHECK(!strcmp(ro + 100, "from the child"), "the child's write not seen: %s", ro + 100);
	waitpid(c, NULL, 0); /* its two attaches go with it */
	/* the read-only attach stays read-only: a write must fault */
	pid_t w = fork();
	if (w == 0) {
		signal(SIGSEGV, SIG_DFL);
		ro[0] = 'x';
		_exit(0);
	}
	int st;
	CHECK(waitpid(w, &st, 0) == w && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
	      "read-only attach writable after restore");
	CHECK(shmdt(ro) == 0 && shmdt(rw) == 0, "shmdt after restore");
	CHECK(shmctl(shm, IPC_STAT, &ds) == 0 && ds.shm_nattch == 0, "nattch after shmdt %lu",
	      (unsigned long)ds.shm_nattch);
	shmctl(shm, IPC_RMID, NULL);
	pass();
}

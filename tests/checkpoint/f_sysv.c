/* f_sysv: SysV IPC objects of the slice's ipc namespace come back with
 * their ids, keys, owners, modes and contents: a shared memory segment
 * (not attached), a message queue with messages of several types, a
 * semaphore set with its values. */
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include "zdtm.h"

#define SHMSZ (64 << 10)

struct msg {
	long type;
	char text[32];
};

int main(void)
{
	test_init();
	key_t key = (key_t)(0x5e000000 | getpid());
	int shm = shmget(key, SHMSZ, IPC_CREAT | IPC_EXCL | 0640);
	CHECK(shm >= 0, "shmget");
	unsigned char *m = shmat(shm, NULL, 0);
	CHECK(m != (void *)-1, "shmat");
	for (int i = 0; i < SHMSZ; i++)
		m[i] = (unsigned char)(i * 13 + 7);
	CHECK(shmdt(m) == 0, "shmdt");
	int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	CHECK(q >= 0, "msgget");
	struct msg a = { 5, "first" }, b = { 2, "second, longer" }, c = { 5, "third" };
	CHECK(msgsnd(q, &a, 6, 0) == 0 && msgsnd(q, &b, 15, 0) == 0 && msgsnd(q, &c, 6, 0) == 0, "msgsnd");
	struct msqid_ds qs;
	CHECK(msgctl(q, IPC_STAT, &qs) == 0, "msg stat");
	qs.msg_perm.uid = 1000;
	qs.msg_perm.gid = 1001;
	qs.msg_perm.mode = 0604;
	CHECK(msgctl(q, IPC_SET, &qs) == 0, "msg set owner");
	int sem = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
	unsigned short vals[3] = { 1, 5, 0 };
	CHECK(sem >= 0 && semctl(sem, 0, SETALL, vals) == 0, "semaphores");
	test_daemon();
	test_waitsig();
	CHECK(shmget(key, 0, 0) == shm, "shm id by key: %d want %d", shmget(key, 0, 0), shm);
	struct shmid_ds ss;
	CHECK(shmctl(shm, IPC_STAT, &ss) == 0 && ss.shm_segsz == SHMSZ && (ss.shm_perm.mode & 0777) == 0640 && ss.shm_nattch == 0, "shm stat");
	m = shmat(shm, NULL, SHM_RDONLY);
	CHECK(m != (void *)-1, "shmat after");
	for (int i = 0; i < SHMSZ; i++)
		CHECK(m[i] == (unsigned char)(i * 13 + 7), "shm byte %d", i);
	shmdt(m);
	CHECK(msgctl(q, IPC_STAT, &qs) == 0 && qs.msg_qnum == 3 && qs.msg_perm.uid == 1000 && qs.msg_perm.gid == 1001 && (qs.msg_perm.mode & 0777) == 0604, "msg queue stat: %lu msgs uid %u", (unsigned long)qs.msg_qnum, qs.msg_perm.uid);
	struct msg r;
	CHECK(msgrcv(q, &r, sizeof(r.text), 2, IPC_NOWAIT) == 15 && !strcmp(r.text, "second, longer"), "type 2 message");
	CHECK(msgrcv(q, &r, sizeof(r.text), 0, IPC_NOWAIT) == 6 && r.type == 5 && !strcmp(r.text, "first"), "first message");
	CHECK(msgrcv(q, &r, sizeof(r.text), 0, IPC_NOWAIT) == 6 && !strcmp(r.text, "third"), "third message");
	unsigned short got[3];
	CHECK(semctl(sem, 0, GETALL, got) == 0 && got[0] == 1 && got[1] == 5 && got[2] == 0, "semaphore values %u %u %u", got[0], got[1], got[2]);
	struct sembuf op = { .sem_num = 1, .sem_op = -5, .sem_flg = IPC_NOWAIT };
	CHECK(semop(sem, &op, 1) == 0, "semop after");
	shmctl(shm, IPC_RMID, NULL);
	msgctl(q, IPC_RMID, NULL);
	semctl(sem, 0, IPC_RMID);
	pass();
}

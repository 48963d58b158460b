/*
 * sysvipc.c - the SysV IPC objects of the tree's ipc namespace in a
 * checkpoint: shared memory segments, message queues (read with MSG_COPY,
 * left in place) and semaphore sets. Collected by a child that joined the
 * namespace; recreated with their ids (kernel.*_next_id) by a child of the
 * host restorer that joined the restored tree's user and ipc namespaces,
 * before any process of the tree is restored.
 * Attaches: a "/SYSV<key>" mapping is a CK_VMA_SYSV record (dump.c asks
 * ck_sysv_map); the restore attaches the segment again with an injected
 * shmat(id, start, flags) where the mapping was (restore.c), so the
 * kernel counts it (shm_nattch) and shmdt() knows it. Only whole attaches
 * (offset 0, the segment's size): a partly unmapped or mprotect()ed attach
 * is refused, as is a segment removed (IPC_RMID) while still attached.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "files.h"
#include "vslice/util.h"

/* --- SysV IPC objects of the tree's ipc namespace ----------------------- */

/* ids listed in /proc/sysvipc/<what> (second column), as the reader's ipc
 * namespace has them */
static size_t sysv_ids(const char *what, int **ids)
{
	char p[64], line[512];
	snprintf(p, sizeof(p), "/proc/sysvipc/%s", what);
	cleanup_fclose FILE *f = fopen(p, "re");
	size_t n = 0;
	*ids = NULL;
	if (f && !fgets(line, sizeof(line), f)) /* header */
		return 0;
	while (f && fgets(line, sizeof(line), f)) {
		int key, id;
		if (sscanf(line, "%d %d", &key, &id) != 2)
			continue;
		*ids = ck_xrealloc(*ids, (n + 1) * sizeof(**ids));
		(*ids)[n++] = id;
	}
	return n;
}

static bool put_rec(int out, uint32_t tag, const void *rec, size_t rlen, const void *data,
		    size_t dlen)
{
	return write(out, &tag, 4) == 4 && write(out, rec, rlen) == (ssize_t)rlen &&
	       (!dlen || write(out, data, dlen) == (ssize_t)dlen);
}

/* In a child inside the tree's ipc namespace: every object as tag 1 +
 * struct ck_sysv (host uid/gid) and its contents as tag 2 + struct ck_data
 * + bytes, into a memfd handed back over sock. Exit 0, or 2 + which failed. */
static int sysv_collect(int sock)
{
	int out = memfd_create("vslice-sysv", MFD_CLOEXEC);
	if (out < 0)
		return 2;
	int *ids, ok = 1;
	size_t n = sysv_ids("shm", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct shmid_ds ds;
		if (shmctl(ids[i], IPC_STAT, &ds) < 0)
			return 3;
		if (ds.shm_perm.mode & SHM_DEST)
			return 4; /* refused by the check before; removed meanwhile */
		struct ck_sysv r = {.kind = CK_SYSV_SHM,
				    .id = ids[i],
				    .key = ds.shm_perm.__key,
				    .mode = ds.shm_perm.mode & 0777,
				    .uid = ds.shm_perm.uid,
				    .gid = ds.shm_perm.gid,
				    .size = ds.shm_segsz};
		void *m = shmat(ids[i], NULL, SHM_RDONLY);
		if (m == (void *)-1)
			return 5;
		struct ck_data d = {.kind = CK_D_SYSV_SHM, .id = (uint64_t)ids[i], .len = r.size};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0) &&
		     put_rec(out, 2, &d, sizeof(d), m, r.size);
		shmdt(m);
	}
	free(ids);
	long msgmax = 8192;
	char mm[32];
	if (ck_read_small("/proc/sys/kernel/msgmax", mm, sizeof(mm)) > 0)
		msgmax = atol(mm);
	char *buf = vs_xmalloc(sizeof(long) + (size_t)msgmax);
	n = sysv_ids("msg", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct msqid_ds ds;
		if (msgctl(ids[i], IPC_STAT, &ds) < 0)
			return 6;
		struct ck_sysv r = {.kind = CK_SYSV_MSG,
				    .id = ids[i],
				    .key = ds.msg_perm.__key,
				    .mode = ds.msg_perm.mode & 0777,
				    .uid = ds.msg_perm.uid,
				    .gid = ds.msg_perm.gid,
				    .size = ds.msg_qbytes,
				    .nitems = (uint32_t)ds.msg_qnum};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0);
		for (uint32_t k = 0; k < r.nitems && ok; k++) {
			/* MSG_COPY: the k-th message, left in the queue */
			ssize_t got = msgrcv(ids[i], buf, (size_t)msgmax, k, IPC_NOWAIT | MSG_COPY);
			if (got < 0)
				return 7;
			long mt;
			memcpy(&mt, buf, sizeof(mt));
			uint64_t mtype = (uint64_t)mt;
			struct ck_data d = {.kind = CK_D_SYSV_MSG,
					    .id = (uint64_t)ids[i],
					    .off = k,
					    .len = 8 + (uint64_t)got};
			ok = put_rec(out, 2, &d, sizeof(d), &mtype, 8) &&
			     write(out, buf + sizeof(long), (size_t)got) == got;
		}
	}
	free(buf);
	free(ids);
	n = sysv_ids("sem", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct semid_ds ds;
		union {
			struct semid_ds *buf;
			unsigned short *array;
		} arg = {.buf = &ds};
		if (semctl(ids[i], 0, IPC_STAT, arg) < 0)
			return 8;
		struct ck_sysv r = {.kind = CK_SYSV_SEM,
				    .id = ids[i],
				    .key = ds.sem_perm.__key,
				    .mode = ds.sem_perm.mode & 0777,
				    .uid = ds.sem_perm.uid,
				    .gid = ds.sem_perm.gid,
				    .size = ds.sem_nsems};
		unsigned short *vals = vs_xcalloc(r.size, sizeof(*vals));
		arg.array = vals;
		if (semctl(ids[i], 0, GETALL, arg) < 0)
			return 9;
		struct ck_data d = {
		    .kind = CK_D_SYSV_SEM, .id = (uint64_t)ids[i], .len = r.size * sizeof(*vals)};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0) &&
		     put_rec(out, 2, &d, sizeof(d), vals, d.len);
		free(vals);
	}
	free(ids);
	if (!ok)
		return 10;
	return ck_send_fd(sock, out) == 0 ? 0 : 11;
}

/* The tree's SysV objects into the stream: records (owners mapped into
 * the slice's user ns) and their contents. */
void ck_sysv_map(struct ck_files *f, struct ck_vma *v, uint64_t ino)
{
	v->kind = CK_VMA_SYSV;
	v->shm_id = ino; /* ipc/shm.c: the segment file's inode number is its id */
	f->sysv_maps = ck_xrealloc(f->sysv_maps, (f->sysv_maps_n + 1) * sizeof(*f->sysv_maps));
	f->sysv_maps[f->sysv_maps_n++] = (struct ck_sysv_map){
	    .pid = v->pid, .id = (int32_t)ino, .len = v->end - v->start, .pgoff = v->pgoff};
}

long ck_sysv_shmat_flags(const struct ck_vma *v)
{
	return ((v->prot & PROT_WRITE) ? 0 : SHM_RDONLY) | ((v->prot & PROT_EXEC) ? SHM_EXEC : 0);
}

/* Each attach seen in maps must be a whole one of a segment we dump. */
static int check_attach(const struct ck_files *f, const struct ck_sysv *s, struct vs_error *err)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < f->sysv_maps_n; i++) {
		const struct ck_sysv_map *m = &f->sysv_maps[i];
		if (m->id != s->id)
			continue;
		if (m->pgoff != 0 || m->len != (s->size + pg - 1) / pg * pg)
			return vs_error_set(err, ENOTSUP,
					    "pid %d: refused: SysV shared memory segment %d is "
					    "attached in part (munmap or mprotect of part of it)",
					    m->pid, m->id);
	}
	return 0;
}

int ck_sysv_dump(const struct ck_files *f, pid_t hpid, struct ck_writer *w, struct vs_error *err)
{
	int mfd = -1, code;
	int r = ck_ns_child(hpid, sysv_collect, &mfd, &code);
	if (r < 0 || code)
		return vs_error_set(
		    err, r < 0 ? -r : EIO,
		    "SysV IPC objects of the tree: collecting them failed (step %d)", code);
	cleanup_close int fd = mfd;
	off_t size = lseek(fd, 0, SEEK_END);
	if (fd < 0 || size < 0)
		return vs_error_set(err, EIO, "SysV IPC objects of the tree: no result");
	uint8_t *p = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (size && p == MAP_FAILED)
		return vs_error_sys(err, errno, "SysV IPC objects: map the result");
	for (off_t o = 0; o + 4 <= size && r >= 0;) {
		uint32_t tag;
		memcpy(&tag, p + o, 4);
		o += 4;
		if (tag == 1 && o + (off_t)sizeof(struct ck_sysv) <= size) {
			struct ck_sysv s;
			memcpy(&s, p + o, sizeof(s));
			o += (off_t)sizeof(s);
			uint64_t u, g;
			if (!ck_ns_id(hpid, "uid_map", s.uid, &u) ||
			    !ck_ns_id(hpid, "gid_map", s.gid, &g)) {
				r = vs_error_set(
				    err, ENOTSUP,
				    "refused: SysV IPC object %d owned by %u:%u, which the "
				    "slice does not map",
				    s.id, s.uid, s.gid);
				break;
			}
			s.uid = (uint32_t)u;
			s.gid = (uint32_t)g;
			if (s.kind == CK_SYSV_SHM && (r = check_attach(f, &s, err)) < 0)
				break;
			r = ck_write_section(w, CK_SEC_SYSV, &s, sizeof(s), NULL, 0, err);
		} else if (tag == 2 && o + (off_t)sizeof(struct ck_data) <= size) {
			struct ck_data d;
			memcpy(&d, p + o, sizeof(d));
			o += (off_t)sizeof(d);
			if ((uint64_t)(size - o) < d.len) {
				r = vs_error_set(err, EIO, "SysV IPC objects: short result");
				break;
			}
			r = ck_write_section(w, CK_SEC_DATA, &d, sizeof(d), p + o, d.len, err);
			o += (off_t)d.len;
		} else {
			r = vs_error_set(err, EIO, "SysV IPC objects: bad result");
		}
	}
	if (p)
		munmap(p, (size_t)size);
	return r;
}

/* Recreate the SysV objects in the caller's ipc namespace with their ids,
 * owners, modes and contents. Creation and change times and creator/last
 * pids are the restore's. */
static int sysv_restore(const struct ckpt_image *img, struct vs_error *err)
{
	for (size_t i = 0; i < img->sysv.n; i++) {
		const struct ck_sysv *s = &img->sysv.v[i];
		static const char *const next[] = {"", "shm_next_id", "msg_next_id", "sem_next_id"};
		char p[64], v[16];
		snprintf(p, sizeof(p), "/proc/sys/kernel/%s", next[s->kind]);
		int n = snprintf(v, sizeof(v), "%d", s->id);
		int fd = open(p, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, v, (size_t)n) != n) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return vs_error_sys(err, e, "SysV IPC object %d: %s", s->id, p);
		}
		close(fd);
		int id = -1, flags = IPC_CREAT | IPC_EXCL | (int)s->mode;
		const struct ck_data_r *d = NULL;
		for (size_t k = 0; k < img->data.n && !d && s->kind != CK_SYSV_MSG; k++)
			if (img->data.v[k].h.kind ==
				(s->kind == CK_SYSV_SHM ? CK_D_SYSV_SHM : CK_D_SYSV_SEM) &&
			    img->data.v[k].h.id == (uint64_t)s->id)
				d = &img->data.v[k];
		if (s->kind == CK_SYSV_SHM) {
			id = shmget(s->key, s->size, flags);
			struct shmid_ds ds;
			void *m = id == s->id ? shmat(id, NULL, 0) : (void *)-1;
			if (m == (void *)-1 || (d && (d->h.len > s->size || d->h.off)))
				return vs_error_sys(err, errno, "SysV shared memory %d", s->id);
			if (d)
				memcpy(m, d->data, d->h.len);
			shmdt(m);
			if (shmctl(id, IPC_STAT, &ds) == 0) {
				ds.shm_perm.uid = s->uid;
				ds.shm_perm.gid = s->gid;
				ds.shm_perm.mode = s->mode;
				if (shmctl(id, IPC_SET, &ds) < 0)
					id = -1;
			}
		} else if (s->kind == CK_SYSV_MSG) {
			id = msgget(s->key, flags);
			struct msqid_ds ds;
			for (uint32_t k = 0; k < s->nitems && id == s->id; k++) {
				const struct ck_data_r *m = NULL;
				for (size_t j = 0; j < img->data.n && !m; j++)
					if (img->data.v[j].h.kind == CK_D_SYSV_MSG &&
					    img->data.v[j].h.id == (uint64_t)s->id &&
					    img->data.v[j].h.off == k && img->data.v[j].h.len >= 8)
						m = &img->data.v[j];
				if (!m)
					return vs_error_set(
					    err, EINVAL,
					    "SysV message queue %d: message %u missing", s->id, k);
				char *buf = vs_xmalloc(sizeof(long) + m->h.len);
				uint64_t mtype; /* data in the stream is not 8-byte aligned */
				memcpy(&mtype, m->data, sizeof(mtype));
				long mt = (long)mtype;
				memcpy(buf, &mt, sizeof(mt));
				memcpy(buf + sizeof(long), m->data + 8, m->h.len - 8);
				int rc = msgsnd(id, buf, m->h.len - 8, IPC_NOWAIT);
				free(buf);
				if (rc < 0)
					return vs_error_sys(err, errno,
							    "SysV message queue %d: message %u",
							    s->id, k);
			}
			if (id == s->id && msgctl(id, IPC_STAT, &ds) == 0) {
				ds.msg_perm.uid = s->uid;
				ds.msg_perm.gid = s->gid;
				ds.msg_perm.mode = s->mode;
				ds.msg_qbytes = s->size;
				if (msgctl(id, IPC_SET, &ds) < 0)
					id = -1;
			}
		} else {
			id = semget(s->key, (int)s->size, flags);
			struct semid_ds ds;
			union {
				struct semid_ds *buf;
				unsigned short *array;
			} arg = {.buf = &ds};
			if (id == s->id && d && d->h.len == s->size * sizeof(unsigned short)) {
				unsigned short *vals = vs_xmalloc(d->h.len);
				memcpy(vals, d->data, d->h.len);
				arg.array = vals;
				int rc = semctl(id, 0, SETALL, arg);
				free(vals);
				if (rc < 0)
					return vs_error_sys(err, errno,
							    "SysV semaphores %d: values", s->id);
			}
			arg.buf = &ds;
			if (id == s->id && semctl(id, 0, IPC_STAT, arg) == 0) {
				ds.sem_perm.uid = s->uid;
				ds.sem_perm.gid = s->gid;
				ds.sem_perm.mode = s->mode;
				if (semctl(id, 0, IPC_SET, arg) < 0)
					id = -1;
			}
		}
		if (id != s->id)
			return vs_error_sys(err, id < 0 ? errno : EEXIST,
					    "SysV IPC object %d: created as %d", s->id, id);
	}
	return 0;
}

/* Host side of the restore: the slice's /proc/sys is read-only, so the
 * *_next_id knobs are written by a child of ours that joined the restored
 * tree's user and ipc namespaces (ids then are the slice's). */
int ck_files_restore_host(const struct ckpt_image *img, pid_t root_hpid, struct vs_error *err)
{
	if (!img->sysv.n)
		return 0;
	int pp[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	pid_t c = fork();
	if (c < 0) {
		int e = errno;
		close(pp[0]);
		close(pp[1]);
		return vs_error_sys(err, e, "fork");
	}
	if (c == 0) {
		struct vs_error e2;
		char p[64];
		struct stat mine, its;
		snprintf(p, sizeof(p), "/proc/%d/ns/user", root_hpid);
		int ufd = open(p, O_RDONLY | O_CLOEXEC);
		snprintf(p, sizeof(p), "/proc/%d/ns/ipc", root_hpid);
		int ifd = open(p, O_RDONLY | O_CLOEXEC);
		bool same_user = ufd >= 0 && fstat(ufd, &its) == 0 &&
				 stat("/proc/self/ns/user", &mine) == 0 &&
				 its.st_ino == mine.st_ino;
		int r = 0;
		if (ufd < 0 || ifd < 0 || (!same_user && setns(ufd, CLONE_NEWUSER) < 0) ||
		    setns(ifd, CLONE_NEWIPC) < 0)
			r = vs_error_sys(&e2, errno, "join the ipc namespace of pid %d", root_hpid);
		else
			r = sysv_restore(img, &e2);
		if (r < 0 && write(pp[1], e2.msg, strlen(e2.msg)) < 0)
			_exit(2);
		_exit(r < 0 ? 1 : 0);
	}
	close(pp[1]);
	char msg[VS_ERROR_MAX];
	ssize_t n = vs_read_all(pp[0], msg, sizeof(msg) - 1);
	close(pp[0]);
	int status;
	while (waitpid(c, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	msg[n > 0 ? n : 0] = 0;
	return vs_error_set(err, EIO, "restore SysV IPC objects: %s",
			    msg[0] ? msg : "the helper died");
}

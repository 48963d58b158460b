/*
 * files.h - file descriptors in a checkpoint: classification and refusal,
 * dump (pidfd_getfd + fdinfo + sock_diag), and the restore-side "pool" of
 * open file descriptions that the root stub builds before forking the tree
 * so that descriptions shared between processes stay shared.
 */
#ifndef VSLICE_CKPT_FILES_H
#define VSLICE_CKPT_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "ckpt_int.h"

struct ck_fobj {
	uint32_t id, kind;
	pid_t hpid, vpid;
	int fd;	 /* number in hpid */
	int dup; /* our duplicate (pidfd_getfd) */
	uint64_t dev, ino;
};

struct ck_shm {
	uint64_t id, off, len;
};

struct ck_ux {
	uint64_t ino, peer;
	uint32_t type, state, rqlen, wqlen, shutdown;
	uint32_t name_len;
	char name[108];
	uint64_t vfs_ino; /* inode of the bound path's socket file, 0 = none */
	uint32_t vfs_dev; /* its file system, kernel dev_t encoding */
};

/* An epoll target seen in fdinfo, resolved to a file id once every fd of
 * the tree is known (ck_files_finish). */
struct ck_eptarget {
	struct ck_epoll rec;
	int epdup;     /* our duplicate of the epoll file */
	uint32_t toff; /* how many earlier targets of this epoll share tfd */
	uint64_t ino;  /* the target's inode, from fdinfo */
	pid_t vpid;    /* the epoll's owner, for messages */
	int epfd;
};

struct ck_files {
	struct ck_fobj *obj;
	size_t n;
	uint32_t next_id;
	struct ck_shm *shm;
	size_t shm_n;
	unsigned nr_fds;
	struct ck_ux *ux;
	size_t ux_n;
	bool ux_loaded;
	uint64_t *pipes; /* pipe inodes whose data was dumped */
	size_t pipes_n;
	struct ck_lock *locks; /* written, for de-duplication */
	size_t locks_n;
	uint64_t (*ghosts)[2]; /* (dev, ino) of unlinked files whose content was dumped */
	size_t ghosts_n;
	struct ck_eptarget *ept;
	size_t ept_n;
	pid_t ns_hpid; /* a process of the tree: its ipc namespace is dumped */
	struct ck_sysv_map {
		int32_t pid, id;
		uint64_t len, pgoff;
	} * sysv_maps; /* SysV attaches seen in maps, checked against the segments */
	size_t sysv_maps_n;
};

void ck_files_init(struct ck_files *f);
void ck_files_free(struct ck_files *f);
/* Refuse unsupported fds of a running process (cheap, no stop needed). */
int ck_files_check(pid_t hpid, pid_t vpid, struct vs_error *err);
/* Refuse unsupported namespace-wide state (SysV IPC objects). */
int ck_files_check_ns(pid_t hpid, struct vs_error *err);
/* Dump every fd of a stopped process. */
int ck_files_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid,
		  struct vs_error *err);
int ck_files_finish(struct ck_files *f, struct ck_writer *w, struct vs_error *err);

/* Restore side (inside the target namespaces). pool gets one fd per file
 * record (img->files order) and then one memfd per shared-memory object
 * (shm_ids order), all >= base. */
struct ck_pool {
	int *fd; /* [img->files.n] */
	uint64_t *shm_id;
	int *shm_fd;
	size_t shm_n;
	int base;
};
int ck_pool_create(const struct ckpt_image *img, int base, struct ck_pool *pool,
		   struct vs_error *err);
/* In the stub of process pid, after its children are forked: put its fds in
 * place and re-add epoll targets it owns. */
int ck_pool_install(const struct ckpt_image *img, const struct ck_pool *pool, pid_t pid,
		    struct vs_error *err);
int ck_pool_shm_fd(const struct ck_pool *pool, uint64_t id);
/* In the stub of process pid, after it closed the pool (closing any fd of a
 * file drops the process's POSIX locks on it): take its POSIX locks again. */
int ck_pool_locks(const struct ckpt_image *img, pid_t pid, struct vs_error *err);
/* Host side, once the stubs of the tree under root_hpid are there: what
 * only the host can recreate in the tree's namespaces (SysV IPC objects:
 * the slice's /proc/sys is read-only). */
int ck_files_restore_host(const struct ckpt_image *img, pid_t root_hpid, struct vs_error *err);

/* --- shared by files.c and its helpers (locks.c, inotify.c, inet.c,
 * sysvipc.c); errors as everywhere: <0 with err filled. ---------------- */

/* Our duplicate of fd of hpid (pidfd_getfd), or -errno. */
int ck_getfd(pid_t hpid, int fd);
/* Run fn(sock) in a child that joined hpid's net and ipc namespaces; it can
 * hand back one fd over sock (SCM_RIGHTS). *code = its exit code. */
int ck_ns_child(pid_t hpid, int (*fn)(int sock), int *fd_out, int *code);
/* Send fd over the unix socket sock (SCM_RIGHTS, one byte): 0 or -1. */
int ck_send_fd(int sock, int fd);
int ck_put_data(struct ck_writer *w, uint32_t kind, uint64_t id, uint64_t off, const void *p,
		size_t len, struct vs_error *err);
/* Host id as seen in hpid's user namespace (map: "uid_map"/"gid_map"). */
bool ck_ns_id(pid_t hpid, const char *map, uint32_t id, uint64_t *out);
/* Does a process of hpid's pid namespace (not its PID 1) have an fd for
 * which match holds? */
bool ck_tree_fd_any(pid_t hpid, bool (*match)(pid_t pid, int fd, void *arg), void *arg);
int ck_pool_fd_of(const struct ckpt_image *img, const struct ck_pool *pool, uint32_t id);

/* locks.c: the "lock:" lines of one fd's fdinfo; w NULL = check only. */
int ck_locks_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		  uint32_t id, bool new_file, const struct stat *st, const char *info,
		  struct vs_error *err);
int ck_lock_take(int fd, const struct ck_lock *l, struct vs_error *err);

/* inotify.c: refuse or (w set) dump the watches of inotify fd (dup = ours). */
int ck_inotify_dump(struct ck_writer *w, pid_t hpid, pid_t vpid, int fd, int dup, uint32_t id,
		    const char *info, struct vs_error *err);
int ck_inotify_rewatch(const struct ckpt_image *img, const struct ck_file *f, int fd,
		       struct vs_error *err);

/* memfd.c: is this fd a memfd (by its /proc link and stat)? Its object
 * id, shared with dump.c's id of a shared mapping of it. Refuse or (w
 * set) dump one (dup = ours): name, owner, seals in cf; content once. */
bool ck_memfd_is(const char *link, const struct stat *st);
uint64_t ck_memfd_id(const struct stat *st);
int ck_memfd_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, int dup, const char *link,
		  const struct stat *st, struct ck_file *cf, struct vs_error *err);
/* Restore: one memfd per shared memory object (DATA(shm) or CK_F_MEMFD),
 * into pool->shm_*; then a CK_F_MEMFD record's own open file on it. */
int ck_memfd_pool(const struct ckpt_image *img, struct ck_pool *pool, struct vs_error *err);
int ck_memfd_open(const struct ck_pool *pool, const struct ck_file *f, int flags,
		  struct vs_error *err);

/* inet.c: refuse or (w set) dump a TCP/UDP socket; recreate one (returns
 * the fd); leave repair mode once every socket of the pool exists. */
int ck_inet_dump(struct ck_writer *w, pid_t hpid, int dup, uint32_t id, struct vs_error *err);
int ck_inet_create(const struct ckpt_image *img, const struct ck_file *f, struct vs_error *err);
int ck_inet_resume(const struct ckpt_image *img, const struct ck_pool *pool, struct vs_error *err);

/* sysvipc.c: the SysV objects of hpid's ipc namespace into the stream. */
int ck_sysv_dump(const struct ck_files *f, pid_t hpid, struct ck_writer *w, struct vs_error *err);
/* dump.c's hook for a mapping named "/SYSV...": v becomes a CK_VMA_SYSV of
 * segment ino (its id); ck_sysv_dump refuses it unless it is a whole attach. */
void ck_sysv_map(struct ck_files *f, struct ck_vma *v, uint64_t ino);
/* restore.c's hook: shmat() flags that give v's protection. */
long ck_sysv_shmat_flags(const struct ck_vma *v);

#endif

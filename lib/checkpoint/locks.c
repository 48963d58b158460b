/*
 * locks.c - file locks in a checkpoint: POSIX (fcntl) locks belong to the
 * process and are taken again by it, through the fd it used; OFD and flock
 * locks belong to the open file and are taken on the restore pool's. Read
 * from the "lock:" lines of fdinfo. Leases and delegations are refused.
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
#include <sys/file.h>

#include "files.h"
#include "vslice/util.h"

/* Does pid map the inode st (maps lines: "... dev inode path")? */
static bool maps_inode(pid_t hpid, const struct stat *st)
{
	char p[64], line[4096];
	snprintf(p, sizeof(p), "/proc/%d/maps", hpid);
	cleanup_fclose FILE *f = fopen(p, "re");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*s %*s %*s %x:%x %lu", &maj, &min, &ino) == 3 && ino &&
		    ino == st->st_ino && maj == major(st->st_dev) && min == minor(st->st_dev))
			return true;
	}
	return false;
}

/* The locks held through this fd: the "lock:" lines of its fdinfo, e.g.
 * "lock:\t1: POSIX  ADVISORY  WRITE 20 fe:00:123 10 29". A POSIX lock
 * belongs to the process (it shows on the fds of the open file it was taken
 * through, in the owner only); OFD and flock locks belong to the open file
 * and show in every process that has it (new_file: first time we see it). */
int ck_locks_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		  uint32_t id, bool new_file, const struct stat *st, const char *info,
		  struct vs_error *err)
{
	for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "lock:", 5) != 0)
			continue;
		char kind[16], mode[16], rw[16], end[32];
		long long start;
		int lpid;
		if (sscanf(l + 5, " %*d: %15s %15s %15s %d %*s %lld %31s", kind, mode, rw, &lpid,
			   &start, end) != 6)
			return vs_error_set(err, EBADMSG, "pid %d fd %d: unreadable lock line",
					    vpid, fd);
		struct ck_lock lk = {.fd = -1, .file_id = id, .start = start};
		if (strcmp(kind, "POSIX") == 0)
			lk.kind = CK_LOCK_POSIX;
		else if (strcmp(kind, "OFDLCK") == 0)
			lk.kind = CK_LOCK_OFD;
		else if (strcmp(kind, "FLOCK") == 0)
			lk.kind = CK_LOCK_FLOCK;
		else
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: %s lock (lease or delegation) "
					    "not supported",
					    vpid, fd, kind);
		if (strcmp(mode, "ADVISORY") != 0 ||
		    (strcmp(rw, "READ") != 0 && strcmp(rw, "WRITE") != 0))
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: %s %s %s lock not supported",
					    vpid, fd, kind, mode, rw);
		lk.type = strcmp(rw, "READ") == 0 ? F_RDLCK : F_WRLCK;
		lk.len = strcmp(end, "EOF") == 0 ? 0 : atoll(end) - start + 1;
		if (start < 0 || lk.len < 0)
			return vs_error_set(err, EBADMSG, "pid %d fd %d: bad lock range", vpid, fd);
		if (lk.kind == CK_LOCK_POSIX) {
			/* The restore closes the fds it mapped files from, which
			 * would drop a POSIX lock on a mapped file again. */
			if (maps_inode(hpid, st))
				return vs_error_set(
				    err, ENOTSUP,
				    "pid %d fd %d: refused: POSIX lock on a file the "
				    "process also maps",
				    vpid, fd);
			lk.pid = vpid;
			lk.fd = fd;
		} else if (!new_file) {
			continue;
		}
		if (!w)
			continue; /* checking only */
		bool seen = false;
		for (size_t i = 0; i < f->locks_n && !seen; i++) {
			const struct ck_lock *o = &f->locks[i];
			seen = o->kind == lk.kind && o->file_id == lk.file_id && o->pid == lk.pid &&
			       o->type == lk.type && o->start == lk.start && o->len == lk.len;
		}
		if (seen)
			continue;
		f->locks = ck_xrealloc(f->locks, (f->locks_n + 1) * sizeof(*f->locks));
		f->locks[f->locks_n++] = lk;
		int r = ck_write_section(w, CK_SEC_LOCK, &lk, sizeof(lk), NULL, 0, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int ck_lock_take(int fd, const struct ck_lock *l, struct vs_error *err)
{
	int rc;
	if (l->kind == CK_LOCK_FLOCK) {
		rc = flock(fd, (l->type == F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB);
	} else {
		struct flock fl = {.l_type = (short)l->type,
				   .l_whence = SEEK_SET,
				   .l_start = l->start,
				   .l_len = l->len};
		rc = fcntl(fd, l->kind == CK_LOCK_OFD ? F_OFD_SETLK : F_SETLK, &fl);
	}
	if (rc < 0)
		return vs_error_sys(err, errno, "%s %s lock on file %u at %" PRId64 "+%" PRId64,
				    l->kind == CK_LOCK_FLOCK ? "flock"
				    : l->kind == CK_LOCK_OFD ? "OFD"
							     : "POSIX",
				    l->type == F_RDLCK ? "read" : "write", l->file_id, l->start,
				    l->len);
	return 0;
}

int ck_pool_locks(const struct ckpt_image *img, pid_t pid, struct vs_error *err)
{
	for (size_t i = 0; i < img->locks.n; i++) {
		const struct ck_lock *l = &img->locks.v[i];
		if (l->kind != CK_LOCK_POSIX || l->pid != pid)
			continue;
		int r = ck_lock_take(l->fd, l, err);
		if (r < 0)
			return vs_error_wrap(err, "pid %d fd %d", pid, l->fd);
	}
	return 0;
}

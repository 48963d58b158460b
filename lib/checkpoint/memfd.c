/*
 * memfd.c - memfds (memfd_create) and the shared memory objects of a
 * checkpoint.
 *
 * A memfd is an unlinked tmpfs inode on the kernel's internal shm mount.
 * One inode is one "shared memory object" of the image, keyed by the id
 * dump.c gives a shared mapping of it: (minor(st_dev) << 48) ^ ino, the
 * dev:ino that /proc/pid/maps shows. Its content is DATA(shm) under that
 * id, written once (by the fd or by a mapping covering it, whichever comes
 * first); a CK_F_MEMFD file record carries what only the fd shows:
 *   path = the memfd's name (what follows "/memfd:"), size, mode,
 *   u[0] uid, u[1] gid (the slice's user ns), u[2] F_GET_SEALS,
 *   u[3] the object id.
 * On restore the pool makes one memfd per object, before any file: every
 * CK_F_MEMFD record re-opens it (its own open file description, flags and
 * offset) and every MAP_SHARED mapping maps it, so an fd and a mapping
 * share pages again. Seals go on last: F_SEAL_WRITE would refuse the
 * content, F_SEAL_SHRINK/GROW the size.
 * Not here: memfds with huge pages (MFD_HUGETLB, hugetlbfs: refused) and
 * memfd_secret (an anon inode, refused by classify).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <linux/magic.h>

#include "files.h"
#include "vslice/util.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define MEMFD_DELETED " (deleted)"

bool ck_memfd_is(const char *link, const struct stat *st)
{
	return strncmp(link, "/memfd:", 7) == 0 && S_ISREG(st->st_mode) && st->st_nlink == 0;
}

uint64_t ck_memfd_id(const struct stat *st)
{
	return ((uint64_t)minor(st->st_dev) << 48) ^ st->st_ino;
}

/* The name memfd_create got: the link without "/memfd:" and " (deleted)". */
static bool memfd_name(const char *link, char *out, size_t len)
{
	const char *n = link + 7;
	size_t l = strlen(n), dl = strlen(MEMFD_DELETED);
	if (l >= dl && strcmp(n + l - dl, MEMFD_DELETED) == 0)
		l -= dl;
	if (l >= len || l > 249 /* memfd_create's limit */)
		return false;
	memcpy(out, n, l);
	out[l] = 0;
	return true;
}

int ck_memfd_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, int dup, const char *link,
		  const struct stat *st, struct ck_file *cf, struct vs_error *err)
{
	struct statfs sfs;
	if (fstatfs(dup, &sfs) < 0)
		return vs_error_sys(err, errno, "memfd %s: fstatfs", link);
	if (sfs.f_type == HUGETLBFS_MAGIC)
		return vs_error_set(err, ENOTSUP,
				    "refused: memfd %s has huge pages (MFD_HUGETLB), "
				    "which are not supported",
				    link);
	if (sfs.f_type != TMPFS_MAGIC)
		return vs_error_set(err, ENOTSUP, "refused: memfd %s is not on tmpfs", link);
	if (!memfd_name(link, cf->path, sizeof(cf->path)))
		return vs_error_set(err, ENAMETOOLONG, "refused: memfd name %s too long", link);
	if (!ck_ns_id(hpid, "uid_map", st->st_uid, &cf->u[0]) ||
	    !ck_ns_id(hpid, "gid_map", st->st_gid, &cf->u[1]))
		return vs_error_set(
		    err, ENOTSUP, "refused: memfd %s owned by %u:%u, which the slice does not map",
		    link, st->st_uid, st->st_gid);
	int seals = fcntl(dup, F_GET_SEALS);
	if (seals < 0)
		return vs_error_sys(err, errno, "memfd %s: F_GET_SEALS", link);
	cf->u[2] = (uint32_t)seals;
	cf->u[3] = ck_memfd_id(st);
	if (!w)
		return 0;
	/* content once per inode: skip if this fd's or a mapping's copy has it */
	for (size_t i = 0; i < f->shm_n; i++)
		if (f->shm[i].id == cf->u[3] && f->shm[i].off == 0 &&
		    f->shm[i].len >= (uint64_t)st->st_size)
			return 0;
	f->shm = ck_xrealloc(f->shm, (f->shm_n + 1) * sizeof(*f->shm));
	f->shm[f->shm_n++] = (struct ck_shm){cf->u[3], 0, (uint64_t)st->st_size};
	/* our own open file: the task's may be write-only */
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", dup);
	cleanup_close int rd = open(p, O_RDONLY | O_CLOEXEC);
	if (rd < 0)
		return vs_error_sys(err, errno, "memfd %s: reopen to read", link);
	/* data only: a sparse memfd (ftruncate'd large) stays small in the image */
	cleanup_free char *buf = vs_xmalloc(1 << 20);
	for (off_t o = 0; o < st->st_size;) {
		off_t data = lseek(rd, o, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole from here on */
		off_t hole = data < 0 ? -1 : lseek(rd, data, SEEK_HOLE);
		if (data < 0 || hole < 0)
			return vs_error_sys(err, errno, "memfd %s: SEEK_DATA/SEEK_HOLE", link);
		for (o = data; o < hole && o < st->st_size;) {
			size_t want = hole - o < (1 << 20) ? (size_t)(hole - o) : (1 << 20);
			ssize_t n = pread(rd, buf, want, o);
			if (n < 0)
				return vs_error_sys(err, errno, "memfd %s: read", link);
			if (n == 0)
				return 0; /* shrunk meanwhile: the tree is stopped, so not by it */
			int r =
			    ck_put_data(w, CK_D_SHM, cf->u[3], (uint64_t)o, buf, (size_t)n, err);
			if (r < 0)
				return r;
			o += n;
		}
	}
	return 0;
}

/* --- restore ------------------------------------------------------------ */

/* The CK_F_MEMFD record of object id, if an fd had it open. */
static const struct ck_file *memfd_record(const struct ckpt_image *img, uint64_t id)
{
	for (size_t i = 0; i < img->files.n; i++)
		if (img->files.v[i].kind == CK_F_MEMFD && img->files.v[i].u[3] == id)
			return &img->files.v[i];
	return NULL;
}

/* A name for an object no fd had open: a memfd mapping's "/memfd:NAME
 * (deleted)", else the name shared anonymous memory always got. */
static void object_name(const struct ckpt_image *img, uint64_t id, char *out, size_t len)
{
	snprintf(out, len, "vslice-shm");
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *v = &img->vmas.v[i];
		if (v->kind == CK_VMA_SHARED && v->shm_id == id &&
		    strncmp(v->path, "/memfd:", 7) == 0) {
			if (!memfd_name(v->path, out, len))
				snprintf(out, len, "vslice-shm");
			return;
		}
	}
}

static int object_create(const struct ckpt_image *img, uint64_t id, struct vs_error *err)
{
	const struct ck_file *mf = memfd_record(img, id);
	char name[CK_PATH];
	if (mf)
		snprintf(name, sizeof(name), "%s", mf->path);
	else
		object_name(img, id, name, sizeof(name));
	int m = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m < 0 && errno == EACCES) /* vm.memfd_noexec = 2: only non-executable ones */
		m = memfd_create(name, MFD_CLOEXEC | MFD_NOEXEC_SEAL);
	if (m < 0)
		return vs_error_sys(err, errno, "shared memory %s: memfd_create", name);
	cleanup_close int fd = m;
	uint64_t size = 0;
	for (size_t k = 0; k < img->data.n; k++) {
		const struct ck_data_r *d = &img->data.v[k];
		if (d->h.kind == CK_D_SHM && d->h.id == id && d->h.off + d->h.len > size)
			size = d->h.off + d->h.len;
	}
	if (mf)
		size = mf->size;
	if (ftruncate(fd, (off_t)size) < 0)
		return vs_error_sys(err, errno, "shared memory %s: size %" PRIu64, name, size);
	for (size_t k = 0; k < img->data.n; k++) {
		const struct ck_data_r *d = &img->data.v[k];
		if (d->h.kind != CK_D_SHM || d->h.id != id || d->h.off >= size)
			continue;
		size_t len = d->h.off + d->h.len > size ? size - d->h.off : d->h.len;
		if (pwrite(fd, d->data, len, (off_t)d->h.off) != (ssize_t)len)
			return vs_error_sys(err, errno ? errno : EIO, "shared memory %s: content",
					    name);
	}
	if (mf) {
		/* chown first: it clears set-id bits that chmod then sets */
		if (fchown(fd, (uid_t)mf->u[0], (gid_t)mf->u[1]) < 0 ||
		    fchmod(fd, mf->mode & 07777) < 0)
			return vs_error_sys(err, errno, "memfd %s: owner %u:%u, mode %o", name,
					    (unsigned)mf->u[0], (unsigned)mf->u[1],
					    mf->mode & 07777);
		int have = fcntl(fd, F_GET_SEALS);
		int want = (int)mf->u[2] & ~(have < 0 ? 0 : have);
		if (want && fcntl(fd, F_ADD_SEALS, want) < 0)
			return vs_error_sys(err, errno, "memfd %s: F_ADD_SEALS %#x", name, want);
	}
	return steal_fd(&fd);
}

int ck_memfd_pool(const struct ckpt_image *img, struct ck_pool *pool, struct vs_error *err)
{
	for (size_t i = 0; i < img->data.n + img->files.n; i++) {
		uint64_t id;
		if (i < img->data.n && img->data.v[i].h.kind == CK_D_SHM)
			id = img->data.v[i].h.id;
		else if (i >= img->data.n && img->files.v[i - img->data.n].kind == CK_F_MEMFD)
			id = img->files.v[i - img->data.n].u[3];
		else
			continue;
		if (ck_pool_shm_fd(pool, id) >= 0)
			continue;
		int m = object_create(img, id, err);
		if (m < 0)
			return m;
		int p = fcntl(m, F_DUPFD, pool->base);
		int e = errno;
		close(m);
		if (p < 0)
			return vs_error_sys(err, e, "shared memory: move into the pool");
		pool->shm_id = ck_xrealloc(pool->shm_id, (pool->shm_n + 1) * 8);
		pool->shm_fd = ck_xrealloc(pool->shm_fd, (pool->shm_n + 1) * sizeof(int));
		pool->shm_id[pool->shm_n] = id;
		pool->shm_fd[pool->shm_n++] = p;
	}
	return 0;
}

int ck_memfd_open(const struct ck_pool *pool, const struct ck_file *f, int flags,
		  struct vs_error *err)
{
	int m = ck_pool_shm_fd(pool, f->u[3]);
	if (m < 0)
		return vs_error_set(err, ENOENT, "memfd %s: no shared memory object", f->path);
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", m);
	int fd = open(p, flags);
	if (fd < 0)
		return vs_error_sys(err, errno, "memfd %s: open", f->path);
	lseek(fd, (off_t)f->pos, SEEK_SET);
	return fd;
}

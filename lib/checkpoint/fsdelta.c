/*
 * fsdelta.c - copy a slice's overlay upper directory (its file system delta)
 * into a checkpoint and back, shifting owners from one slice id range to
 * another. Keeps modes, owners, times, symlinks, overlay whiteouts (char
 * 0:0 devices) and trusted.overlay.* / user.* xattrs (opaque directories).
 * Never follows a symlink; other device nodes, sockets and fifos are
 * copied as what they are (mknod), hard links become copies.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vslice/ckpt.h"
#include "vslice/util.h"

static uid_t shift(uid_t id, uint32_t from, uint32_t to)
{
	if (id >= from && id < from + 65536u)
		return id - from + to;
	return id;
}

static int copy_xattrs(int sfd, int dfd, const char *sname, const char *dname, struct vs_error *err)
{
	char list[4096];
	(void)sname;
	(void)dname;
	ssize_t n = flistxattr(sfd, list, sizeof(list));
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(list + off) + 1) {
		const char *k = list + off;
		if (strncmp(k, "trusted.", 8) != 0 && strncmp(k, "user.", 5) != 0)
			continue;
		char val[4096];
		ssize_t vl = fgetxattr(sfd, k, val, sizeof(val));
		if (vl >= 0 && fsetxattr(dfd, k, val, (size_t)vl, 0) < 0 && errno != ENOTSUP)
			return vs_error_sys(err, errno, "set xattr %s", k);
	}
	return 0;
}

static int copy_dir(int sdir, int ddir, const char *rel, uint32_t from, uint32_t to,
		    struct vs_error *err)
{
	int dup_fd = dup(sdir);
	if (dup_fd < 0)
		return vs_error_sys(err, errno, "%s: dup", rel);
	cleanup_closedir DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return vs_error_sys(err, errno, "%s: opendir", rel);
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		struct stat st;
		if (fstatat(sdir, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "%s/%s: stat", rel, n);
		uid_t u = shift(st.st_uid, from, to);
		gid_t g = shift(st.st_gid, from, to);
		int r = 0;
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(ddir, n, st.st_mode & 07777) < 0 && errno != EEXIST)
				return vs_error_sys(err, errno, "%s/%s: mkdir", rel, n);
			cleanup_close int s2 =
			    openat(sdir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			cleanup_close int d2 =
			    openat(ddir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s2 < 0 || d2 < 0)
				return vs_error_sys(err, errno, "%s/%s: open dir", rel, n);
			char sub[4096];
			snprintf(sub, sizeof(sub), "%s/%s", rel, n);
			if ((r = copy_dir(s2, d2, sub, from, to, err)) < 0)
				return r;
			if ((r = copy_xattrs(s2, d2, n, n, err)) < 0)
				return r;
			fchown(d2, u, g);
			fchmod(d2, st.st_mode & 07777);
			struct timespec ts[2] = {st.st_atim, st.st_mtim};
			futimens(d2, ts);
			continue;
		}
		if (S_ISREG(st.st_mode)) {
			cleanup_close int s2 = openat(sdir, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			cleanup_close int d2 =
			    openat(ddir, n, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
				   st.st_mode & 07777);
			if (s2 < 0 || d2 < 0)
				return vs_error_sys(err, errno, "%s/%s: open", rel, n);
			char buf[65536];
			ssize_t k;
			while ((k = read(s2, buf, sizeof(buf))) > 0)
				if (vs_write_all(d2, buf, (size_t)k) < 0)
					return vs_error_sys(err, errno, "%s/%s: write", rel, n);
			if (k < 0)
				return vs_error_sys(err, errno, "%s/%s: read", rel, n);
			if ((r = copy_xattrs(s2, d2, n, n, err)) < 0)
				return r;
			fchown(d2, u, g);
			fchmod(d2, st.st_mode & 07777);
			struct timespec ts[2] = {st.st_atim, st.st_mtim};
			futimens(d2, ts);
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t l = readlinkat(sdir, n, target, sizeof(target) - 1);
			if (l < 0)
				return vs_error_sys(err, errno, "%s/%s: readlink", rel, n);
			target[l] = 0;
			unlinkat(ddir, n, 0);
			if (symlinkat(target, ddir, n) < 0)
				return vs_error_sys(err, errno, "%s/%s: symlink", rel, n);
		} else {
			unlinkat(ddir, n, 0);
			if (mknodat(ddir, n, st.st_mode, st.st_rdev) < 0)
				return vs_error_sys(err, errno, "%s/%s: mknod", rel, n);
		}
		fchownat(ddir, n, u, g, AT_SYMLINK_NOFOLLOW);
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		utimensat(ddir, n, ts, AT_SYMLINK_NOFOLLOW);
	}
	return 0;
}

int ckpt_copy_tree(const char *src, const char *dst, uint32_t id_from, uint32_t id_to,
		   struct vs_error *err)
{
	int r = vs_mkdir_p(dst, 0755, err);
	if (r < 0)
		return r;
	cleanup_close int s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cleanup_close int d = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s < 0 || d < 0)
		return vs_error_sys(err, errno, "copy %s -> %s", src, dst);
	r = copy_dir(s, d, src, id_from, id_to, err);
	if (r < 0)
		return r;
	struct stat st;
	if (fstat(s, &st) == 0) {
		fchown(d, shift(st.st_uid, id_from, id_to), shift(st.st_gid, id_from, id_to));
		fchmod(d, st.st_mode & 07777);
	}
	return copy_xattrs(s, d, src, dst, err);
}

/* --- the fs delta inside the stream ------------------------------------ */

#include "ckpt_int.h"

struct fs_walk {
	struct ck_writer *w;
	uint64_t entries;
	uint8_t *buf;
};

static size_t xattr_blob(int fd, uint8_t *out, size_t cap)
{
	char list[4096];
	ssize_t n = flistxattr(fd, list, sizeof(list));
	size_t used = 0;
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(list + off) + 1) {
		const char *k = list + off;
		if (strncmp(k, "trusted.", 8) != 0 && strncmp(k, "user.", 5) != 0)
			continue;
		char val[4096];
		ssize_t vl = fgetxattr(fd, k, val, sizeof(val));
		size_t kl = strlen(k) + 1;
		if (vl < 0 || used + kl + 4 + (size_t)vl > cap)
			continue;
		memcpy(out + used, k, kl);
		uint32_t l32 = (uint32_t)vl;
		memcpy(out + used + kl, &l32, 4);
		memcpy(out + used + kl + 4, val, (size_t)vl);
		used += kl + 4 + (size_t)vl;
	}
	return used;
}

static int put_entry(struct fs_walk *fw, int dirfd, const char *name, const char *rel,
		     const struct stat *st, struct vs_error *err)
{
	char link[4096] = "";
	if (S_ISLNK(st->st_mode)) {
		ssize_t l = readlinkat(dirfd, name, link, sizeof(link) - 1);
		if (l < 0)
			return vs_error_sys(err, errno, "fs delta %s: readlink", rel);
		link[l] = 0;
	}
	uint8_t xattrs[8192];
	size_t xl = 0;
	int fd = -1;
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			return vs_error_sys(err, errno, "fs delta %s: open", rel);
		xl = xattr_blob(fd, xattrs, sizeof(xattrs));
	}
	struct ck_fsentry e = {.mode = st->st_mode,
			       .uid = st->st_uid,
			       .gid = st->st_gid,
			       .path_len = (uint32_t)strlen(rel) + 1,
			       .link_len = (uint32_t)strlen(link) + 1,
			       .xattr_len = (uint32_t)xl,
			       .rdev = st->st_rdev,
			       .size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0,
			       .mtime_sec = st->st_mtim.tv_sec,
			       .mtime_nsec = st->st_mtim.tv_nsec};
	size_t tl = e.path_len + e.link_len + xl;
	uint8_t *tail = vs_xmalloc(tl);
	memcpy(tail, rel, e.path_len);
	memcpy(tail + e.path_len, link, e.link_len);
	memcpy(tail + e.path_len + e.link_len, xattrs, xl);
	int r = ck_write_section(fw->w, CK_SEC_FSENTRY, &e, sizeof(e), tail, tl, err);
	free(tail);
	uint64_t idx = fw->entries++;
	if (r >= 0 && S_ISREG(st->st_mode)) {
		uint64_t off = 0;
		while (off < e.size) {
			ssize_t n = pread(fd, fw->buf, 1 << 20, (off_t)off);
			if (n < 0) {
				r = vs_error_sys(err, errno, "fs delta %s: read", rel);
				break;
			}
			if (n == 0)
				break; /* shrank meanwhile: the rest reads as holes */
			struct ck_fsdata d = {.entry = idx, .off = off};
			r = ck_write_section(fw->w, CK_SEC_FSDATA, &d, sizeof(d), fw->buf,
					     (size_t)n, err);
			if (r < 0)
				break;
			off += (uint64_t)n;
		}
	}
	if (fd >= 0)
		close(fd);
	return r;
}

static int walk(struct fs_walk *fw, int dirfd, const char *rel, struct vs_error *err)
{
	int dfd = dup(dirfd);
	if (dfd < 0)
		return vs_error_sys(err, errno, "fs delta: dup");
	cleanup_closedir DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return vs_error_sys(err, errno, "fs delta %s: opendir", rel[0] ? rel : ".");
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[4096];
		if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "",
				     de->d_name) >= sizeof(sub))
			return vs_error_set(err, ENAMETOOLONG, "fs delta: path too long under %s",
					    rel);
		struct stat st;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "fs delta %s: stat", sub);
		int r = put_entry(fw, dirfd, de->d_name, sub, &st, err);
		if (r < 0)
			return r;
		if (S_ISDIR(st.st_mode)) {
			cleanup_close int c = openat(
			    dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (c < 0)
				return vs_error_sys(err, errno, "fs delta %s: open dir", sub);
			if ((r = walk(fw, c, sub, err)) < 0)
				return r;
		}
	}
	return 0;
}

int ck_fs_dump(struct ck_writer *w, const char *root, struct vs_error *err)
{
	cleanup_close int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "fs delta %s", root);
	struct fs_walk fw = {.w = w, .buf = vs_xmalloc(1 << 20)};
	int r = walk(&fw, fd, "", err);
	free(fw.buf);
	return r;
}

/* Open the parent directory of rel below root, never following a link. */
static int open_parent(int root, const char *rel, const char **base)
{
	const char *slash = strrchr(rel, '/');
	*base = slash ? slash + 1 : rel;
	int cur = dup(root);
	if (!slash)
		return cur;
	char comp[4096];
	const char *c = rel;
	while (cur >= 0 && c < slash) {
		size_t n = strcspn(c, "/");
		memcpy(comp, c, n);
		comp[n] = 0;
		int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		cur = next;
		c += n + 1;
	}
	return cur;
}

int ckpt_image_extract_fs(const struct ckpt_image *img, const char *dst, uint32_t id_from,
			  uint32_t id_to, struct vs_error *err)
{
	int r = vs_mkdir_p(dst, 0755, err);
	if (r < 0)
		return r;
	cleanup_close int root = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return vs_error_sys(err, errno, "%s", dst);
	size_t di = 0;
	for (size_t i = 0; i < img->fs_n; i++) {
		const struct ck_fsentry_r *e = &img->fs[i];
		const char *base;
		cleanup_close int pd = open_parent(root, e->path, &base);
		if (pd < 0)
			return vs_error_sys(err, errno, "restore fs %s: parent directory", e->path);
		mode_t m = e->h.mode;
		int fd = -1;
		if (S_ISDIR(m)) {
			if (mkdirat(pd, base, 0700) < 0 && errno != EEXIST)
				return vs_error_sys(err, errno, "restore fs %s: mkdir", e->path);
			fd = openat(pd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		} else if (S_ISREG(m)) {
			unlinkat(pd, base, 0);
			fd = openat(pd, base, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				    0600);
			for (; fd >= 0 && di < img->fsd_n && img->fsd[di].h.entry == i; di++)
				if (pwrite(fd, img->fsd[di].data, img->fsd[di].len,
					   (off_t)img->fsd[di].h.off) != (ssize_t)img->fsd[di].len)
					return vs_error_sys(err, errno, "restore fs %s: write",
							    e->path);
			if (fd >= 0 && ftruncate(fd, (off_t)e->h.size) < 0)
				return vs_error_sys(err, errno, "restore fs %s: truncate", e->path);
		} else if (S_ISLNK(m)) {
			unlinkat(pd, base, 0);
			if (symlinkat(e->link, pd, base) < 0)
				return vs_error_sys(err, errno, "restore fs %s: symlink", e->path);
		} else {
			unlinkat(pd, base, 0);
			if (mknodat(pd, base, m, (dev_t)e->h.rdev) < 0)
				return vs_error_sys(err, errno, "restore fs %s: mknod", e->path);
		}
		if ((S_ISDIR(m) || S_ISREG(m)) && fd < 0)
			return vs_error_sys(err, errno, "restore fs %s: open", e->path);
		uid_t u = shift(e->h.uid, id_from, id_to);
		gid_t g = shift(e->h.gid, id_from, id_to);
		/* ids from outside the slice's range (a foreign or forged stream):
		 * the slice's root owns it, without set-id bits. Whiteouts keep 0:0. */
		bool whiteout = S_ISCHR(m) && e->h.rdev == 0;
		if (!whiteout && (u == e->h.uid || g == e->h.gid) &&
		    (e->h.uid - id_from >= 65536u || e->h.gid - id_from >= 65536u)) {
			u = id_to;
			g = id_to;
			m &= ~(mode_t)(S_ISUID | S_ISGID);
		}
		struct timespec ts[2] = {{e->h.mtime_sec, e->h.mtime_nsec},
					 {e->h.mtime_sec, e->h.mtime_nsec}};
		if (fd >= 0) {
			for (uint32_t o = 0; o + 5 < e->h.xattr_len;) {
				const char *k = (const char *)e->xattrs + o;
				size_t kl = strnlen(k, e->h.xattr_len - o);
				uint32_t vl;
				if (o + kl + 5 > e->h.xattr_len)
					break;
				memcpy(&vl, e->xattrs + o + kl + 1, 4);
				if (o + kl + 5 + (uint64_t)vl > e->h.xattr_len)
					break;
				if (fsetxattr(fd, k, e->xattrs + o + kl + 5, vl, 0) < 0 &&
				    errno != ENOTSUP) {
					int e2 = errno;
					close(fd);
					return vs_error_sys(err, e2, "restore fs %s: xattr %s",
							    e->path, k);
				}
				o += (uint32_t)(kl + 5 + vl);
			}
			if (fchown(fd, u, g) < 0 || fchmod(fd, m & 07777) < 0) {
				int e2 = errno;
				close(fd);
				return vs_error_sys(err, e2, "restore fs %s: owner/mode", e->path);
			}
			futimens(fd, ts);
			close(fd);
		} else {
			fchownat(pd, base, u, g, AT_SYMLINK_NOFOLLOW);
			utimensat(pd, base, ts, AT_SYMLINK_NOFOLLOW);
		}
	}
	return 0;
}

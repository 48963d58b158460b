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
	char sp[64], dp[64];
	snprintf(sp, sizeof(sp), "/proc/self/fd/%d", sfd);
	snprintf(dp, sizeof(dp), "/proc/self/fd/%d", dfd);
	(void)sname;
	(void)dname;
	ssize_t n = llistxattr(sp, list, sizeof(list));
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(list + off) + 1) {
		const char *k = list + off;
		if (strncmp(k, "trusted.", 8) != 0 && strncmp(k, "user.", 5) != 0)
			continue;
		char val[4096];
		ssize_t vl = lgetxattr(sp, k, val, sizeof(val));
		if (vl >= 0 && lsetxattr(dp, k, val, (size_t)vl, 0) < 0 && errno != ENOTSUP)
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
			cleanup_close int s2 = openat(sdir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			cleanup_close int d2 = openat(ddir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
			struct timespec ts[2] = { st.st_atim, st.st_mtim };
			futimens(d2, ts);
			continue;
		}
		if (S_ISREG(st.st_mode)) {
			cleanup_close int s2 = openat(sdir, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			cleanup_close int d2 = openat(ddir, n, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
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
			struct timespec ts[2] = { st.st_atim, st.st_mtim };
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
		struct timespec ts[2] = { st.st_atim, st.st_mtim };
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

/*
 * inotify.c - inotify fds in a checkpoint: the watches come from fdinfo
 * ("inotify wd: ino: sdev: mask:"); each watched inode is found by path
 * under the process's root (overlayfs file handles cannot be opened
 * again), and the restore re-adds the watches by path with their masks and
 * their watch descriptor numbers. Unread events are refused: they cannot
 * be read back without consuming them.
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
#include <dirent.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <linux/openat2.h>

#include "files.h"
#include "vslice/util.h"

/* --- inotify ------------------------------------------------------------ */

/* Watch descriptors are recreated by using up the numbers below them: one
 * add + remove each, so very high ones are refused. */
#define CK_INOTIFY_WD_MAX (1 << 20)

struct ck_watch {
	int32_t wd;
	uint32_t mask, sdev;
	uint64_t ino;
	char path[CK_PATH]; /* found under the process's root, or "" */
};

/* The watches of an inotify fd: "inotify wd:%x ino:%lx sdev:%x mask:%x ..." */
static size_t parse_watches(const char *info, struct ck_watch **out)
{
	size_t n = 0;
	*out = NULL;
	for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned wd, sdev, mask;
		unsigned long long ino;
		if (sscanf(l, "inotify wd:%x ino:%llx sdev:%x mask:%x", &wd, &ino, &sdev, &mask) !=
		    4)
			continue;
		*out = ck_xrealloc(*out, (n + 1) * sizeof(**out));
		(*out)[n++] =
		    (struct ck_watch){.wd = (int32_t)wd, .mask = mask, .sdev = sdev, .ino = ino};
	}
	return n;
}

/* Find a path for every watched inode by walking the process's root
 * breadth first (watched files sit near the top: /etc, /run, /srv...), not
 * into /proc, /sys, /dev, never through a symlink, at most CK_WALK_MAX
 * entries. The kernel's file handles of overlayfs inodes cannot be opened
 * again, so the path is what the restore re-adds the watch by. */
#define CK_WALK_MAX 200000

static bool watch_is(const struct ck_watch *w, const struct stat *st)
{
	return !w->path[0] && w->ino == st->st_ino && major(st->st_dev) == (w->sdev >> 20) &&
	       minor(st->st_dev) == (w->sdev & 0xfffff);
}

static void find_watch_paths(pid_t hpid, struct ck_watch *w, size_t n)
{
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", hpid);
	cleanup_close int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (rfd < 0 || fstat(rfd, &st) < 0)
		return;
	size_t left = n, seen = 0;
	for (size_t i = 0; i < n; i++)
		if (watch_is(&w[i], &st)) {
			snprintf(w[i].path, sizeof(w[i].path), "/");
			left--;
		}
	/* queue of directories (paths relative to the root, "" = root) */
	char **q = vs_xmalloc(sizeof(*q));
	size_t qh = 0, qn = 1, qcap = 1;
	q[0] = vs_xstrdup("");
	while (left && qh < qn && seen < CK_WALK_MAX) {
		char *dir = q[qh++];
		struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
						  RESOLVE_NO_MAGICLINKS};
		int dfd = dir[0] ? (int)syscall(SYS_openat2, rfd, dir, &how, sizeof(how))
				 : fcntl(rfd, F_DUPFD_CLOEXEC, 0);
		cleanup_closedir DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d && dfd >= 0)
			close(dfd);
		struct dirent *de;
		while (d && left && seen < CK_WALK_MAX && (de = readdir(d))) {
			const char *nm = de->d_name;
			if (!strcmp(nm, ".") || !strcmp(nm, "..") ||
			    (!dir[0] &&
			     (!strcmp(nm, "proc") || !strcmp(nm, "sys") || !strcmp(nm, "dev"))))
				continue;
			seen++;
			if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			char path[CK_PATH - 1]; /* and a leading '/' */
			if (snprintf(path, sizeof(path), "%s%s%s", dir, dir[0] ? "/" : "", nm) >=
			    (int)sizeof(path))
				continue;
			for (size_t i = 0; i < n; i++)
				if (watch_is(&w[i], &st)) {
					snprintf(w[i].path, sizeof(w[i].path), "/%s", path);
					left--;
				}
			if (S_ISDIR(st.st_mode)) {
				if (qn == qcap) {
					qcap *= 2;
					q = ck_xrealloc(q, qcap * sizeof(*q));
				}
				q[qn++] = vs_xstrdup(path);
			}
		}
	}
	for (size_t i = 0; i < qn; i++)
		free(q[i]);
	free(q);
}

/* An inotify fd: no unread events (they cannot be read back without
 * consuming them), every watched inode found by path. If w is set, one
 * CK_SEC_INOTIFY record per watch. */
int ck_inotify_dump(struct ck_writer *w, pid_t hpid, pid_t vpid, int fd, int dup, uint32_t id,
		    const char *info, struct vs_error *err)
{
	int pending = 0;
	if (ioctl(dup, FIONREAD, &pending) < 0)
		return vs_error_sys(err, errno, "inotify FIONREAD");
	if (pending > 0)
		return vs_error_set(err, ENOTSUP,
				    "refused: inotify fd with %d bytes of unread events", pending);
	struct ck_watch *ws;
	size_t n = parse_watches(info, &ws);
	find_watch_paths(hpid, ws, n);
	int r = 0;
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (ws[i].wd > CK_INOTIFY_WD_MAX) {
			r = vs_error_set(
			    err, ENOTSUP,
			    "refused: inotify watch descriptor %d is too high to recreate",
			    ws[i].wd);
			break;
		}
		if (!ws[i].path[0]) {
			r = vs_error_set(err, ENOTSUP,
					 "refused: inotify watch %d on inode %" PRIu64
					 " that no path in the slice leads to",
					 ws[i].wd, ws[i].ino);
			break;
		}
		if (!w)
			continue;
		struct ck_inotify rec = {.file_id = id, .wd = ws[i].wd, .mask = ws[i].mask};
		memcpy(rec.path, ws[i].path, sizeof(rec.path));
		r = ck_write_section(w, CK_SEC_INOTIFY, &rec, sizeof(rec), NULL, 0, err);
	}
	free(ws);
	return r;
}

/* Re-add the watches of inotify file f to fd with their old descriptors:
 * the kernel hands out the next number after the last one, so numbers
 * below a watch's own are used up by adding and removing it again. The
 * IN_IGNORED events that leaves behind are read away. */
int ck_inotify_rewatch(const struct ckpt_image *img, const struct ck_file *f, int fd,
		       struct vs_error *err)
{
	int32_t done = 0;
	for (;;) {
		const struct ck_inotify *next = NULL;
		for (size_t i = 0; i < img->inotify.n; i++) {
			const struct ck_inotify *n = &img->inotify.v[i];
			if (n->file_id == f->id && n->wd > done && (!next || n->wd < next->wd))
				next = n;
		}
		if (!next)
			break;
		for (;;) {
			int wd = inotify_add_watch(fd, next->path, next->mask);
			if (wd < 0)
				return vs_error_sys(err, errno, "inotify watch %d on %s", next->wd,
						    next->path);
			if (wd == next->wd)
				break;
			if (next->wd - wd > CK_INOTIFY_WD_MAX)
				return vs_error_set(err, E2BIG,
						    "inotify watch %d on %s: too far from %d",
						    next->wd, next->path, wd);
			if (wd > next->wd || inotify_rm_watch(fd, wd) < 0)
				return vs_error_set(err, EEXIST,
						    "inotify watch %d on %s: got descriptor %d",
						    next->wd, next->path, wd);
		}
		done = next->wd;
	}
	char buf[4096];
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	fcntl(fd, F_SETFL, fl);
	return 0;
}

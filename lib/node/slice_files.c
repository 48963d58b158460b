/*
 * slice_files.c - files into and out of a slice as a tar stream
 * (slice_files.h; `slicectl cp`, GET|PUT /v1/slivers/NAME/files).
 *
 * Three parts:
 *
 *  - the packer: a file, or a directory walked with *at() calls that never
 *    follow a symlink below the top, as pax entries (libarchive), the top
 *    under its own name, the rest below it in pre-order;
 *  - the unpacker: the reverse, trusting nothing (see below);
 *  - the slice side: a child process that sees the slice as its root does
 *    and runs the packer or the unpacker there, reporting on a pipe.
 *
 * Where the slice's root is. Running (or frozen): the child joins the user
 * and mount namespaces of the slice's PID 1 (setns on a pidfd taken while
 * the slice was checked to run) and becomes uid 0 there; "/" is the
 * slice's root with whatever it mounted. Stopped: under the slice's lock
 * (a start waits), the child mounts the slice's overlay itself as a
 * detached mount (fsopen/fsmount, in no mount namespace): lowerdir the
 * image id-mapped into a fresh user namespace for the slice's range (or
 * the chowned copy where id-mapping is refused, as the launcher does),
 * upperdir/workdir the slice's (in its disk image with --disk:
 * slice_with_upper), then joins that user namespace as uid 0. In both
 * cases the kernel checks every access as the slice's root: a path the
 * slice could not write (the host's /proc/sys through the slice's /proc,
 * a file owned by an id outside the range) it cannot write either.
 *
 * Paths inside the slice are resolved from the root's fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): an absolute symlink, or
 * a ".." above the root, at any component, fails with EXDEV, which is
 * reported as "leaves the slice's root"; relative symlinks that stay
 * inside are followed, like cp does.
 *
 * The unpacker's rules: the first entry is the top, one plain component
 * (a file, a directory or a symlink); every other entry is "top/..." of
 * plain components (no "", ".", ".."), and its parent is the directory the
 * stream made last or one of that one's parents (pre-order), so the
 * unpacker keeps only that chain (a path and the mtimes to set on leaving
 * each level) and opens each entry's directory with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the staging dir: a
 * symlink from the stream is never walked through. Regular files,
 * directories and symlinks only (no hard links, devices, fifos); at most
 * 2 MiB of input per header (libarchive would otherwise grow a pax header
 * or a sparse map as the input says). Everything goes under a temporary
 * name beside the target (".vslice-cp-<random>") and is renamed into
 * place, a directory with RENAME_NOREPLACE, only after the stream ended
 * and the caller's commit said it was whole; a failure removes it.
 * Owners: in a slice, the stream's ids (ids above 65535 become the slice's
 * root); on the host, the stream's ids with set-uid and set-gid dropped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../image/archive_dl.h"
#include "../runtime/sliver_internal.h"
#include "slice_xfer_int.h"
#include "vslice/idrange.h"
#include "vslice/image.h"
#include "vslice/slice.h"
#include "vslice/slice_files.h"
#include "vslice/util.h"

#define FILES_IO_BUF	   (256u << 10)
#define FILES_HEADER_MAX   (2u << 20) /* input libarchive may read for one header */
#define FILES_DEPTH_MAX	   (PATH_MAX / 2 + 2)
#define FILES_TMP_PREFIX   ".vslice-cp-"
#define FILES_SLICE_RESOLV (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
#define FILES_STAGE_RESOLV (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* Where paths are resolved: the host (AT_FDCWD, no restriction) or a
 * slice's root (its fd, FILES_SLICE_RESOLV). */
struct files_where {
	int root_fd;
	uint64_t resolve;
	bool host;
};

static int refuse(struct vs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct vs_error *err, int code, const char *fmt, ...)
{
	char msg[VS_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vs_error_set(err, code, "%s", msg);
	return vs_error_kind(err, VS_EK_REFUSED);
}

static int openat2_retry(int dfd, const char *path, uint64_t flags, uint64_t resolve)
{
	struct open_how how = {.flags = flags | O_CLOEXEC, .resolve = resolve};
	int fd;
	/* EAGAIN: a rename elsewhere raced the lookup (RESOLVE_BENEATH). */
	for (int i = 0; i < 16; i++) {
		fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	return fd;
}

/* path (as the user wrote it: shown) opened where w says. */
static int where_open(const struct files_where *w, const char *path, const char *shown,
		      uint64_t flags, struct vs_error *err)
{
	int fd = openat2_retry(w->root_fd, path, flags, w->resolve);
	if (fd >= 0)
		return fd;
	if (!w->host && errno == EXDEV)
		return refuse(err, EXDEV,
			      "%s: leaves the slice's root (an absolute symlink or \"..\" on the "
			      "way)",
			      shown);
	if (!w->host && errno == ELOOP)
		return refuse(err, ELOOP, "%s: a magic link or too many symlinks on the way",
			      shown);
	return vs_error_sys(err, errno, "%s", shown);
}

/* A slice path ("/a/b", "a/b") relative to its root ("a/b", "."). */
static const char *slice_rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* Split path into its directory (in dir, "." if none) and last component
 * (in base); trailing slashes dropped. */
static int split_path(const char *path, char dir[PATH_MAX], char base[NAME_MAX + 1],
		      struct vs_error *err)
{
	size_t n = strlen(path);
	if (n == 0 || n >= PATH_MAX)
		return vs_error_set(err, EINVAL, "\"%s\": an empty or too long path", path);
	char tmp[PATH_MAX];
	memcpy(tmp, path, n + 1);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	char *slash = strrchr(tmp, '/');
	const char *b = slash ? slash + 1 : tmp;
	size_t bl = strlen(b);
	if (bl > NAME_MAX)
		return vs_error_set(err, ENAMETOOLONG, "%s: name too long", path);
	memcpy(base, b, bl + 1);
	if (!slash)
		snprintf(dir, PATH_MAX, ".");
	else if (slash == tmp)
		snprintf(dir, PATH_MAX, "/");
	else {
		*slash = '\0';
		snprintf(dir, PATH_MAX, "%s", tmp);
	}
	return 0;
}

static bool plain_name(const char *s)
{
	return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

/* rm -rf of name in dfd, never following a symlink. */
static void rm_rf_at(int dfd, const char *name, unsigned depth)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISDIR(st.st_mode) && depth < FILES_DEPTH_MAX) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d && fd >= 0)
			close(fd);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				rm_rf_at(dirfd(d), de->d_name, depth + 1);
		if (d)
			closedir(d);
		unlinkat(dfd, name, AT_REMOVEDIR);
		return;
	}
	unlinkat(dfd, name, 0);
}

/* ---- the packer --------------------------------------------------------- */

/* The directories the walk is in (a bind mount can make a directory its
 * own descendant: such a one is not entered again). */
struct pack_dirs {
	const struct pack_dirs *up;
	dev_t dev;
	ino_t ino;
};

struct packer {
	const struct pack_dirs *dirs;
	struct archive *a;
	int out_fd;
	uint8_t *buf;
	struct vs_error wfail; /* why writing the stream failed (code 0: it did not) */
	struct vs_error *err;
};

static la_ssize_t pack_write_cb(struct archive *a, void *arg, const void *buf, size_t n)
{
	(void)a;
	struct packer *p = arg;
	if (vs_write_all(p->out_fd, buf, n) < 0) {
		vs_error_sys(&p->wfail, errno, "write the stream");
		return -1;
	}
	return (la_ssize_t)n;
}

static int pack_archive_err(struct packer *p, const char *apath)
{
	if (p->wfail.code) {
		*p->err = p->wfail;
		return -p->err->code;
	}
	const char *s = archive_error_string(p->a);
	return vs_error_set(p->err, EIO, "%s: %s", apath, s ? s : "archive error");
}

static int pack_header(struct packer *p, const char *apath, const struct stat *st, mode_t type,
		       const char *link)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		abort();
	archive_entry_set_pathname(e, apath);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, st->st_mode & 07777);
	archive_entry_set_uid(e, st->st_uid);
	archive_entry_set_gid(e, st->st_gid);
	archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	archive_entry_set_size(e, type == AE_IFREG ? st->st_size : 0);
	if (link)
		archive_entry_set_symlink(e, link);
	int ar = archive_write_header(p->a, e);
	archive_entry_free(e);
	return ar == ARCHIVE_OK ? 0 : pack_archive_err(p, apath);
}

/* A regular file's entry and data (st: fstat of fd; the size in the header
 * is the size sent, whatever the file does meanwhile). */
static int pack_file(struct packer *p, int fd, const struct stat *st, const char *apath)
{
	int r = pack_header(p, apath, st, AE_IFREG, NULL);
	if (r < 0)
		return r;
	for (off_t left = st->st_size; left > 0;) {
		size_t want = left < (off_t)FILES_IO_BUF ? (size_t)left : FILES_IO_BUF;
		ssize_t n = read(fd, p->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vs_error_sys(p->err, errno, "%s: read", apath);
		if (n == 0)
			break; /* shrank: libarchive pads the entry with zeroes */
		if (archive_write_data(p->a, p->buf, (size_t)n) != n)
			return pack_archive_err(p, apath);
		left -= n;
	}
	return 0;
}

static int pack_dir(struct packer *p, int fd, const struct stat *st, char *apath, size_t len);
static int pack_entries(struct packer *p, int fd, char *apath, size_t len);

/* The entry name in directory dfd, at archive path apath (len bytes). */
static int pack_child(struct packer *p, int dfd, const char *name, char *apath, size_t len)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : vs_error_sys(p->err, errno, "%s: stat", apath);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return vs_error_sys(p->err, errno, "%s: readlink", apath);
		target[n] = '\0';
		return pack_header(p, apath, &st, AE_IFLNK, target);
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return 0; /* fifos, sockets, devices: not copied */
	int flags = S_ISDIR(st.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK | O_NOCTTY;
	cleanup_close int fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : vs_error_sys(p->err, errno, "%s: open", apath);
	struct stat fst;
	if (fstat(fd, &fst) < 0)
		return vs_error_sys(p->err, errno, "%s: stat", apath);
	if (fst.st_ino != st.st_ino || fst.st_dev != st.st_dev)
		return vs_error_set(p->err, EAGAIN, "%s: replaced while being copied", apath);
	if (S_ISDIR(fst.st_mode))
		return pack_dir(p, fd, &fst, apath, len);
	return pack_file(p, fd, &fst, apath);
}

static int pack_dir(struct packer *p, int fd, const struct stat *st, char *apath, size_t len)
{
	for (const struct pack_dirs *d = p->dirs; d; d = d->up)
		if (d->dev == st->st_dev && d->ino == st->st_ino)
			return 0; /* a directory inside itself: copied once */
	int r = pack_header(p, apath, st, AE_IFDIR, NULL);
	if (r < 0)
		return r;
	struct pack_dirs here = {.up = p->dirs, .dev = st->st_dev, .ino = st->st_ino};
	p->dirs = &here;
	r = pack_entries(p, fd, apath, len);
	p->dirs = here.up;
	return r;
}

static int pack_entries(struct packer *p, int fd, char *apath, size_t len)
{
	int r;
	int dfd = dup(fd);
	if (dfd < 0)
		return vs_error_sys(p->err, errno, "%s: dup", apath);
	cleanup_closedir DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return vs_error_sys(p->err, errno, "%s: opendir", apath);
	}
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		size_t k = strlen(de->d_name);
		if (len + 1 + k >= PATH_MAX)
			return vs_error_set(p->err, ENAMETOOLONG, "%s/%s: path too long", apath,
					    de->d_name);
		apath[len] = '/';
		memcpy(apath + len + 1, de->d_name, k + 1);
		r = pack_child(p, dirfd(d), de->d_name, apath, len + 1 + k);
		apath[len] = '\0';
		if (r < 0)
			return r;
		errno = 0;
	}
	if (errno)
		return vs_error_sys(p->err, errno, "%s: readdir", apath);
	return 0;
}

/* What pack_run sends: the top, opened (a file or a directory). */
struct pack_src {
	int fd;
	struct stat st;
	char name[NAME_MAX + 1];
};

/* Resolve and open the top (following a final symlink where w allows). */
static int pack_open(const struct files_where *w, const char *path, const char *shown,
		     struct pack_src *s, struct vs_error *err)
{
	char dir[PATH_MAX];
	int r = split_path(path, dir, s->name, err);
	if (r < 0)
		return r;
	cleanup_close int pfd = where_open(w, path, shown, O_PATH, err);
	if (pfd < 0)
		return pfd;
	struct stat st;
	if (fstat(pfd, &st) < 0)
		return vs_error_sys(err, errno, "%s: stat", shown);
	if (S_ISDIR(st.st_mode)) {
		if (!plain_name(s->name))
			return vs_error_set(err, EINVAL,
					    "%s: name the directory itself, not \"/\", \".\" or "
					    "\"..\"",
					    shown);
		s->fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else if (S_ISREG(st.st_mode)) {
		s->fd = where_open(w, path, shown, O_RDONLY | O_NONBLOCK | O_NOCTTY, err);
		if (s->fd < 0)
			return s->fd;
	} else {
		return vs_error_set(err, EINVAL, "%s: not a regular file or a directory", shown);
	}
	if (s->fd < 0)
		return vs_error_sys(err, errno, "%s: open", shown);
	if (fstat(s->fd, &s->st) < 0 || s->st.st_ino != st.st_ino || s->st.st_dev != st.st_dev) {
		close(s->fd);
		s->fd = -1;
		return vs_error_set(err, EAGAIN, "%s: replaced while being opened", shown);
	}
	return 0;
}

static int pack_run(struct pack_src *s, int out_fd, struct vs_error *err)
{
	cleanup_archive_write struct archive *a = archive_write_new();
	cleanup_free uint8_t *buf = vs_xmalloc(FILES_IO_BUF);
	if (!a)
		abort();
	struct packer p = {.a = a, .out_fd = out_fd, .buf = buf, .err = err};
	if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
	    archive_write_open(a, &p, NULL, pack_write_cb, NULL) != ARCHIVE_OK)
		return pack_archive_err(&p, "open the archive");
	char apath[PATH_MAX];
	snprintf(apath, sizeof(apath), "%s", s->name);
	int r = S_ISDIR(s->st.st_mode) ? pack_dir(&p, s->fd, &s->st, apath, strlen(apath))
				       : pack_file(&p, s->fd, &s->st, apath);
	if (r < 0)
		return r;
	if (archive_write_close(a) != ARCHIVE_OK)
		return pack_archive_err(&p, "close the archive");
	return 0;
}

int slice_files_pack(const char *host_path, int out_fd, struct vs_error *err)
{
	int r = archive_dl_load(err);
	if (r < 0)
		return r;
	struct files_where w = {.root_fd = AT_FDCWD, .host = true};
	struct pack_src s = {.fd = -1};
	if ((r = pack_open(&w, host_path, host_path, &s, err)) < 0)
		return r;
	r = pack_run(&s, out_fd, err);
	close(s.fd);
	return r;
}

/* ---- the unpacker ------------------------------------------------------- */

struct unpacker {
	const struct files_where *w;
	struct archive *a;
	int in_fd;
	uint8_t *buf;
	bool in_header;
	uint64_t header_bytes;
	struct vs_error rfail; /* why reading the stream failed (code 0: it did not) */
	/* The target: name in parent_fd (NULL: the top entry's name). */
	int parent_fd;
	const char *name;
	const char *shown; /* the target as the user wrote it */
	char final[NAME_MAX + 1], tmp[NAME_MAX + 1], top[NAME_MAX + 1];
	bool made; /* tmp exists */
	int stage_fd;
	/* The walk below the top: cur ("" = the top) and the mtimes to set on
	 * leaving each level (0 = the top). */
	char cur[PATH_MAX];
	size_t depth;
	struct timespec *mtimes;
	struct vs_error *err;
};

static la_ssize_t unpack_read_cb(struct archive *a, void *arg, const void **buf)
{
	(void)a;
	struct unpacker *u = arg;
	ssize_t n;
	do
		n = read(u->in_fd, u->buf, FILES_IO_BUF);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		vs_error_sys(&u->rfail, errno, "read the stream");
		return -1;
	}
	if (u->in_header && (u->header_bytes += (uint64_t)n) > FILES_HEADER_MAX) {
		refuse(&u->rfail, EINVAL, "an entry header longer than %u bytes", FILES_HEADER_MAX);
		return -1;
	}
	*buf = u->buf;
	return n;
}

static int unpack_archive_err(struct unpacker *u, const char *what)
{
	if (u->rfail.code) {
		*u->err = u->rfail;
		return -u->err->code;
	}
	const char *s = archive_error_string(u->a);
	return refuse(u->err, EINVAL, "%s: %s", what, s ? s : "not a valid tar stream");
}

/* A relative path of plain components (a directory's may end in '/'). */
static int check_entry_path(struct unpacker *u, const char *raw, char out[PATH_MAX])
{
	size_t n = strnlen(raw, PATH_MAX);
	if (n == 0 || n >= PATH_MAX)
		return refuse(u->err, EINVAL, "an entry with an empty or too long path");
	memcpy(out, raw, n + 1);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	if (out[0] == '/')
		return refuse(u->err, EINVAL, "entry \"%s\": absolute path", out);
	for (const char *c = out; *c;) {
		size_t k = strcspn(c, "/");
		if (k == 0 || (k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
			return refuse(u->err, EINVAL,
				      "entry \"%s\": an empty, \".\" or \"..\" path component",
				      out);
		if (k > NAME_MAX)
			return refuse(u->err, EINVAL, "entry \"%s\": a component too long", out);
		c += k;
		if (*c == '/')
			c++;
	}
	return 0;
}

static int unpack_ids(const struct unpacker *u, struct archive_entry *e, uid_t *uid, gid_t *gid,
		      mode_t *perm)
{
	int64_t iu = archive_entry_uid(e), ig = archive_entry_gid(e);
	*perm = archive_entry_perm(e) & 07777;
	if (u->w->host) {
		/* The stream is the slice's (or a node's): no set-id file on
		 * the host from it. */
		*perm &= ~(mode_t)06000;
		*uid = iu >= 0 && iu < (int64_t)UINT32_MAX ? (uid_t)iu : 65534;
		*gid = ig >= 0 && ig < (int64_t)UINT32_MAX ? (gid_t)ig : 65534;
	} else {
		*uid = iu >= 0 && iu < (int64_t)IDRANGE_SIZE ? (uid_t)iu : 0;
		*gid = ig >= 0 && ig < (int64_t)IDRANGE_SIZE ? (gid_t)ig : 0;
	}
	return 0;
}

/* Owners are set in a slice (as its root) and on the host by root; a user
 * copying out of a remote sliver keeps the files as their own. */
static bool may_chown(const struct unpacker *u)
{
	return !u->w->host || geteuid() == 0;
}

/* The current entry's data into fd (-1: there must be none). */
static int unpack_data(struct unpacker *u, int fd, const char *apath, int64_t size)
{
	int64_t end = 0;
	for (;;) {
		const void *b;
		size_t n;
		la_int64_t off;
		int ar = archive_read_data_block(u->a, &b, &n, &off);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK)
			return unpack_archive_err(u, apath);
		if (!n)
			continue;
		if (fd < 0)
			return refuse(u->err, EINVAL, "entry \"%s\": carries data", apath);
		if (off < 0 || off > size || (int64_t)n > size - off)
			return refuse(u->err, EINVAL, "entry \"%s\": data past its size", apath);
		for (size_t done = 0; done < n;) {
			ssize_t k = pwrite(fd, (const uint8_t *)b + done, n - done,
					   (off_t)(off + (la_int64_t)done));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return vs_error_sys(u->err, errno, "%s: write", apath);
			done += (size_t)k;
		}
		if (off + (int64_t)n > end)
			end = off + (int64_t)n;
	}
	if (fd >= 0 && end != size && ftruncate(fd, size) < 0)
		return vs_error_sys(u->err, errno, "%s: truncate", apath);
	return 0;
}

/* Owner, mode (after the owner: chown drops set-id bits), mtime. */
static int unpack_meta_fd(struct unpacker *u, struct archive_entry *e, int fd, const char *apath,
			  bool times)
{
	uid_t uid;
	gid_t gid;
	mode_t perm;
	unpack_ids(u, e, &uid, &gid, &perm);
	if (may_chown(u) && fchown(fd, uid, gid) < 0)
		return vs_error_sys(u->err, errno, "%s: chown %u:%u", apath, uid, gid);
	if (fchmod(fd, perm) < 0)
		return vs_error_sys(u->err, errno, "%s: chmod", apath);
	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	if (mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000)
		mt.tv_nsec = 0;
	struct timespec ts[2] = {mt, mt};
	if (times && futimens(fd, ts) < 0)
		return vs_error_sys(u->err, errno, "%s: set mtime", apath);
	return 0;
}

/* One entry, name in the directory dfd (the parent fd or a staged dir). */
static int unpack_one(struct unpacker *u, struct archive_entry *e, int dfd, const char *name,
		      const char *apath, int *dir_fd)
{
	mode_t type = archive_entry_filetype(e);
	if (archive_entry_hardlink(e))
		return refuse(u->err, EINVAL, "entry \"%s\": hard links are not accepted", apath);
	int64_t size = archive_entry_size(e);
	if (size < 0)
		return refuse(u->err, EINVAL, "entry \"%s\": bad size", apath);
	cleanup_close int fd = -1;
	int r;
	switch (type) {
	case AE_IFREG:
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno == EEXIST
				   ? refuse(u->err, EEXIST, "entry \"%s\": twice", apath)
				   : vs_error_sys(u->err, errno, "%s: create", apath);
		if ((r = unpack_data(u, fd, apath, size)) < 0)
			return r;
		return unpack_meta_fd(u, e, fd, apath, true);
	case AE_IFDIR:
		if (mkdirat(dfd, name, 0700) < 0)
			return errno == EEXIST
				   ? refuse(u->err, EEXIST, "entry \"%s\": twice", apath)
				   : vs_error_sys(u->err, errno, "%s: mkdir", apath);
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(u->err, errno, "%s: open", apath);
		/* Its mtime when the walk leaves it (its entries change it). */
		if ((r = unpack_meta_fd(u, e, fd, apath, false)) < 0 ||
		    (r = unpack_data(u, -1, apath, 0)) < 0)
			return r;
		*dir_fd = steal_fd(&fd);
		return 0;
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		if (!target || !*target || strlen(target) >= PATH_MAX)
			return refuse(u->err, EINVAL, "entry \"%s\": a symlink without a target",
				      apath);
		if (symlinkat(target, dfd, name) < 0)
			return errno == EEXIST
				   ? refuse(u->err, EEXIST, "entry \"%s\": twice", apath)
				   : vs_error_sys(u->err, errno, "%s: symlink", apath);
		uid_t uid;
		gid_t gid;
		mode_t perm;
		unpack_ids(u, e, &uid, &gid, &perm);
		struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
		if (mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000)
			mt.tv_nsec = 0;
		struct timespec ts[2] = {mt, mt};
		if (may_chown(u) && fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(u->err, errno, "%s: chown", apath);
		if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(u->err, errno, "%s: set mtime", apath);
		return unpack_data(u, -1, apath, 0);
	}
	default:
		return refuse(u->err, EINVAL,
			      "entry \"%s\": only files, directories and symlinks are accepted",
			      apath);
	}
}

/* Leave the current directory of the walk: set its mtime. */
static int unpack_pop(struct unpacker *u)
{
	struct timespec ts[2] = {u->mtimes[u->depth], u->mtimes[u->depth]};
	cleanup_close int fd =
	    u->depth == 0
		? dup(u->stage_fd)
		: openat2_retry(u->stage_fd, u->cur, O_RDONLY | O_DIRECTORY, FILES_STAGE_RESOLV);
	if (fd < 0 || futimens(fd, ts) < 0)
		return vs_error_sys(u->err, errno, "%s/%s: set mtime", u->top, u->cur);
	if (u->depth == 0)
		return 0;
	char *slash = strrchr(u->cur, '/');
	if (slash)
		*slash = '\0';
	else
		u->cur[0] = '\0';
	u->depth--;
	return 0;
}

/* An entry below the top (rel: its path below it). */
static int unpack_below(struct unpacker *u, struct archive_entry *e, const char *apath,
			const char *rel)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	size_t plen = slash ? (size_t)(slash - rel) : 0;
	memcpy(parent, rel, plen);
	parent[plen] = '\0';
	/* Up the walk to the entry's directory: it must be on the chain. */
	while (strcmp(u->cur, parent) != 0) {
		if (u->depth == 0)
			return refuse(u->err, EINVAL,
				      "entry \"%s\": its directory is not one the stream made "
				      "just before it (not in walk order, or through a "
				      "non-directory)",
				      apath);
		int r = unpack_pop(u);
		if (r < 0)
			return r;
	}
	cleanup_close int dfd =
	    u->depth == 0
		? dup(u->stage_fd)
		: openat2_retry(u->stage_fd, u->cur, O_PATH | O_DIRECTORY, FILES_STAGE_RESOLV);
	if (dfd < 0)
		return vs_error_sys(u->err, errno, "%s: open its directory", apath);
	int dir_fd = -1;
	int r = unpack_one(u, e, dfd, base, apath, &dir_fd);
	if (r < 0 || dir_fd < 0)
		return r;
	close(dir_fd);
	if (u->depth + 1 >= FILES_DEPTH_MAX)
		return refuse(u->err, EINVAL, "entry \"%s\": too deep", apath);
	u->depth++;
	snprintf(u->cur, sizeof(u->cur), "%s", rel);
	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	if (mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000)
		mt.tv_nsec = 0;
	u->mtimes[u->depth] = mt;
	return 0;
}

static int unpack_top(struct unpacker *u, struct archive_entry *e, const char *apath)
{
	if (strchr(apath, '/'))
		return refuse(u->err, EINVAL,
			      "entry \"%s\": the first entry must be one name (the copied file "
			      "or directory)",
			      apath);
	/* check_entry_path: a component is at most NAME_MAX bytes. */
	memcpy(u->top, apath, strlen(apath) + 1);
	const char *fin = u->name ? u->name : apath;
	memcpy(u->final, fin, strlen(fin) + 1);
	uint64_t rnd;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		return vs_error_sys(u->err, errno, "getrandom");
	snprintf(u->tmp, sizeof(u->tmp), FILES_TMP_PREFIX "%016llx", (unsigned long long)rnd);
	int dir_fd = -1;
	int r = unpack_one(u, e, u->parent_fd, u->tmp, u->shown, &dir_fd);
	/* Whatever unpack_one made (or half made) under tmp is ours to remove. */
	u->made = r == 0 || (r < 0 && u->err->code != EEXIST);
	if (r < 0)
		return r;
	u->stage_fd = dir_fd;
	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	if (mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000)
		mt.tv_nsec = 0;
	u->mtimes[0] = mt;
	return 0;
}

static int unpack_entries(struct unpacker *u)
{
	if (archive_read_support_format_tar(u->a) != ARCHIVE_OK ||
	    archive_read_open(u->a, u, NULL, unpack_read_cb, NULL) != ARCHIVE_OK)
		return unpack_archive_err(u, "open the stream");
	bool first = true;
	for (;;) {
		struct archive_entry *e;
		u->in_header = true;
		u->header_bytes = 0;
		int ar = archive_read_next_header(u->a, &e);
		u->in_header = false;
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK)
			return unpack_archive_err(u, "read an entry header");
		const char *raw = archive_entry_pathname(e);
		char apath[PATH_MAX];
		int r = raw ? check_entry_path(u, raw, apath)
			    : refuse(u->err, EINVAL, "an entry without a path");
		if (r < 0)
			return r;
		if (first) {
			if ((r = unpack_top(u, e, apath)) < 0)
				return r;
			first = false;
			continue;
		}
		size_t tl = strlen(u->top);
		if (u->stage_fd < 0 || strncmp(apath, u->top, tl) != 0 || apath[tl] != '/')
			return refuse(u->err, EINVAL, "entry \"%s\": not below \"%s/\"", apath,
				      u->top);
		if ((r = unpack_below(u, e, apath, apath + tl + 1)) < 0)
			return r;
	}
	if (first)
		return refuse(u->err, EINVAL, "an empty stream");
	if (u->stage_fd >= 0) {
		for (;;) {
			int r = unpack_pop(u);
			if (r < 0)
				return r;
			if (u->depth == 0 && !u->cur[0])
				break;
		}
	}
	return 0;
}

/* Where the stream goes: dest a directory (into it), else dest's parent
 * (it must be one) under dest's name. Fills u->parent_fd, u->name. */
static int unpack_open(struct unpacker *u, const char *dest, char name[NAME_MAX + 1])
{
	int fd = openat2_retry(u->w->root_fd, dest, O_PATH | O_DIRECTORY, u->w->resolve);
	if (fd >= 0) {
		u->parent_fd = fd;
		u->name = NULL;
		return 0;
	}
	if (errno != ENOENT && errno != ENOTDIR)
		return where_open(u->w, dest, u->shown, O_PATH | O_DIRECTORY, u->err);
	char dir[PATH_MAX];
	int r = split_path(dest, dir, name, u->err);
	if (r < 0)
		return r;
	if (!plain_name(name))
		return vs_error_set(u->err, ENOENT, "%s: no such directory", u->shown);
	fd = where_open(u->w, u->w->host ? dir : slice_rel(dir), u->shown, O_PATH | O_DIRECTORY,
			u->err);
	if (fd < 0)
		return vs_error_wrap(u->err, "parent of %s", u->shown);
	u->parent_fd = fd;
	u->name = name;
	return 0;
}

/* The staged result into place. */
static int unpack_rename(struct unpacker *u)
{
	bool dir = u->stage_fd >= 0;
	if (renameat2(u->parent_fd, u->tmp, u->parent_fd, u->final, dir ? RENAME_NOREPLACE : 0) ==
	    0)
		return 0;
	if (errno == EEXIST || errno == ENOTEMPTY)
		return vs_error_set(u->err, EEXIST,
				    "%s: \"%s\" exists there (remove it, or copy into it)",
				    u->shown, u->final);
	return vs_error_sys(u->err, errno, "%s: put \"%s\" in place", u->shown, u->final);
}

typedef int (*files_commit_fn)(void *arg, struct vs_error *err);

static int unpack_run(struct unpacker *u, files_commit_fn commit, void *arg)
{
	cleanup_archive_read struct archive *a = archive_read_new();
	cleanup_free uint8_t *buf = vs_xmalloc(FILES_IO_BUF);
	cleanup_free struct timespec *mtimes = vs_xcalloc(FILES_DEPTH_MAX, sizeof(*mtimes));
	if (!a)
		abort();
	u->a = a;
	u->buf = buf;
	u->mtimes = mtimes;
	u->stage_fd = -1;
	int r = unpack_entries(u);
	if (r == 0 && commit)
		r = commit(arg, u->err);
	if (r == 0)
		r = unpack_rename(u);
	if (u->stage_fd >= 0)
		close(u->stage_fd);
	if (r < 0 && u->made)
		rm_rf_at(u->parent_fd, u->tmp, 0);
	return r;
}

int slice_files_unpack(const char *host_dest, int in_fd, files_commit_fn commit, void *arg,
		       struct vs_error *err)
{
	int r = archive_dl_load(err);
	if (r < 0)
		return r;
	struct files_where w = {.root_fd = AT_FDCWD, .host = true};
	char name[NAME_MAX + 1];
	struct unpacker u = {.w = &w, .in_fd = in_fd, .shown = host_dest, .err = err};
	if ((r = unpack_open(&u, host_dest, name)) < 0)
		return r;
	r = unpack_run(&u, commit, arg);
	close(u.parent_fd);
	return r;
}

int slice_files_unpack_at(int dir_fd, int in_fd, struct vs_error *err)
{
	int r = archive_dl_load(err);
	if (r < 0)
		return r;
	struct files_where w = {.root_fd = dir_fd, .host = true};
	struct unpacker u = {
	    .w = &w, .in_fd = in_fd, .shown = "the target", .parent_fd = dir_fd, .err = err};
	return unpack_run(&u, NULL, NULL);
}

/* ---- the slice side: a child that sees the slice as its root does ------- */

enum { REPORT_READY = 1, REPORT_DONE };
struct report {
	int phase;
	int code;
	int kind;
	char msg[VS_ERROR_MAX];
};

/* What the child does (fds already moved to their places). */
struct files_work {
	const char *root, *name, *path;
	enum slice_files_op op;
	int io_fd, status_fd, commit_fd, pidfd;
	bool stopped, idmapped, volatile_upper;
	uint32_t id_base;
	const char *image_rootfs, *lower_copy;
};

static void report(int fd, int phase, const struct vs_error *err)
{
	struct report rp = {.phase = phase};
	if (err && err->code) {
		rp.code = err->code;
		rp.kind = err->kind;
		snprintf(rp.msg, sizeof(rp.msg), "%s", err->msg);
	}
	(void)!write(fd, &rp, sizeof(rp));
}

static int commit_from_pipe(void *arg, struct vs_error *err)
{
	const struct files_work *w = arg;
	char c = 0;
	ssize_t n;
	do
		n = read(w->commit_fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || c != 'c')
		return vs_error_set(err, EPIPE, "the stream was cut short: nothing was copied");
	return 0;
}

/* The copy itself, root_fd being the slice's root, as the slice's root. */
static int work_run(struct files_work *wk, int root_fd, struct vs_error *err)
{
	struct files_where w = {.root_fd = root_fd, .resolve = FILES_SLICE_RESOLV};
	const char *rel = slice_rel(wk->path);
	int r;
	if (wk->op == SLICE_FILES_GET) {
		struct pack_src s = {.fd = -1};
		if ((r = pack_open(&w, rel, wk->path, &s, err)) < 0)
			return r;
		report(wk->status_fd, REPORT_READY, NULL);
		r = pack_run(&s, wk->io_fd, err);
		close(s.fd);
		if (r < 0) {
			/* A reader that only sees the stream (a remote client)
			 * must not take what came as whole: garbage where the
			 * next header would be. */
			uint8_t junk[512];
			memset(junk, 0xff, sizeof(junk));
			(void)!write(wk->io_fd, junk, sizeof(junk));
		}
		return r;
	}
	char name[NAME_MAX + 1];
	struct unpacker u = {.w = &w, .in_fd = wk->io_fd, .shown = wk->path, .err = err};
	if ((r = unpack_open(&u, rel, name)) < 0)
		return r;
	report(wk->status_fd, REPORT_READY, NULL);
	r = unpack_run(&u, commit_from_pipe, wk);
	close(u.parent_fd);
	return r;
}

static int enter_running(struct files_work *wk, struct vs_error *err)
{
	if (setns(wk->pidfd, CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return vs_error_sys(err, errno, "enter slice %s", wk->name);
	int r = sliver_become_root(err);
	if (r < 0)
		return vs_error_wrap(err, "slice %s", wk->name);
	cleanup_close int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return vs_error_sys(err, errno, "slice %s: open its root", wk->name);
	return work_run(wk, rootfd, err);
}

/* The image id-mapped into userns, as a detached mount (rootfs.c's way). */
static int idmapped_lower(const char *image, int userns, struct vs_error *err)
{
	cleanup_close int tree =
	    open_tree(AT_FDCWD, image, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return vs_error_sys(err, errno, "open_tree %s", image);
	struct mount_attr attr = {
	    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
	    .userns_fd = (uint64_t)userns,
	};
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return vs_error_sys(err, errno, "id-map %s", image);
	return steal_fd(&tree);
}

static int fs_string(int fs, const char *key, const char *val, struct vs_error *err)
{
	if (fsconfig(fs, val ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, val, 0) < 0)
		return vs_error_sys(err, errno, "overlay option %s", key);
	return 0;
}

/* A stopped slice: its overlay mounted (detached) over upper_fd. */
static int stopped_with_upper(void *arg, int upper_fd, struct vs_error *err)
{
	struct files_work *wk = arg;
	int r;
	if ((r = xfer_require_stopped(wk->root, wk->name, err)) < 0)
		return r;
	cleanup_close int userns = sliver_make_userns(wk->id_base, IDRANGE_SIZE, err);
	if (userns < 0)
		return userns;
	cleanup_close int lower = -1;
	char lower_path[64];
	if (wk->idmapped) {
		if ((lower = idmapped_lower(wk->image_rootfs, userns, err)) < 0)
			return lower;
		snprintf(lower_path, sizeof(lower_path), "/proc/self/fd/%d", lower);
	} else {
		if ((lower = open(wk->lower_copy, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			return vs_error_sys(err, errno, "%s", wk->lower_copy);
		snprintf(lower_path, sizeof(lower_path), "/proc/self/fd/%d", lower);
	}
	cleanup_close int work =
	    openat(upper_fd, "../work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (work < 0)
		return vs_error_sys(err, errno, "slice %s: its overlay work dir", wk->name);
	char upper_path[64], work_path[64];
	snprintf(upper_path, sizeof(upper_path), "/proc/self/fd/%d", upper_fd);
	snprintf(work_path, sizeof(work_path), "/proc/self/fd/%d", work);
	cleanup_close int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return vs_error_sys(err, errno, "fsopen overlay");
	/* Reading: the upper dir is the top lower layer of an overlay with no
	 * upper (read-only by construction, its whiteouts still hide what
	 * they hide; a --disk image is opened read-only, which an upperdir
	 * could not be). Writing: the slice's own upper and work dirs. */
	char both[2 * 64 + 2];
	snprintf(both, sizeof(both), "%s:%s", upper_path, lower_path);
	if (wk->op == SLICE_FILES_GET) {
		if ((r = fs_string(fs, "lowerdir", both, err)) < 0)
			return vs_error_wrap(err, "slice %s", wk->name);
	} else if ((r = fs_string(fs, "lowerdir", lower_path, err)) < 0 ||
		   (r = fs_string(fs, "upperdir", upper_path, err)) < 0 ||
		   (r = fs_string(fs, "workdir", work_path, err)) < 0 ||
		   (wk->volatile_upper && (r = fs_string(fs, "volatile", NULL, err)) < 0))
		return vs_error_wrap(err, "slice %s", wk->name);
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return vs_error_sys(err, errno, "slice %s: mount its overlay", wk->name);
	cleanup_close int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
	if (mnt < 0)
		return vs_error_sys(err, errno, "slice %s: mount its overlay", wk->name);
	/* From here on, as the slice's root: the mount is only reached
	 * through mnt, and the lower/upper fds are not used again. */
	if (setns(userns, CLONE_NEWUSER) < 0)
		return vs_error_sys(err, errno, "slice %s: enter its id range", wk->name);
	if ((r = sliver_become_root(err)) < 0)
		return vs_error_wrap(err, "slice %s", wk->name);
	return work_run(wk, mnt, err);
}

static int child_main(struct files_work *wk, struct vs_error *err)
{
	if (!wk->stopped)
		return enter_running(wk, err);
	uint32_t id_base;
	bool disk;
	return xfer_with_upper(wk->root, wk->name, wk->op == SLICE_FILES_PUT, &id_base, &disk,
			       stopped_with_upper, wk, err);
}

/* fds[i] to i + 3 in this (child) process, everything else closed. */
static void child_fds(int *fds, size_t n)
{
	int tmp[8];
	for (size_t i = 0; i < n; i++)
		tmp[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
	for (size_t i = 0; i < n; i++) {
		if (tmp[i] >= 0)
			dup3(tmp[i], (int)i + 3, O_CLOEXEC);
		fds[i] = tmp[i] >= 0 ? (int)i + 3 : -1;
	}
	close_range((unsigned)n + 3, ~0U, 0);
}

static int read_report(struct slice_files_job *job, struct report *rp)
{
	ssize_t n = vs_read_all(job->status_fd, rp, sizeof(*rp));
	return n == (ssize_t)sizeof(*rp) ? 0 : -1;
}

static int reap(struct slice_files_job *job, struct vs_error *err)
{
	int status = 0;
	while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
		;
	job->pid = -1;
	if (WIFSIGNALED(status))
		return vs_error_set(err, EIO, "the copy process was killed (signal %d)",
				    WTERMSIG(status));
	return vs_error_set(err, EIO, "the copy process ended without a report (exit %d)",
			    WEXITSTATUS(status));
}

static void job_close(struct slice_files_job *job)
{
	if (job->commit_fd >= 0)
		close(job->commit_fd);
	if (job->status_fd >= 0)
		close(job->status_fd);
	job->commit_fd = job->status_fd = -1;
}

/* The child's DONE report into err (and reap it). */
static int job_done(struct slice_files_job *job, struct report *rp, struct vs_error *err)
{
	int status;
	while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
		;
	job->pid = -1;
	job_close(job);
	if (!rp->code)
		return 0;
	vs_error_set(err, rp->code, "%s", rp->msg);
	return vs_error_kind(err, (enum vs_error_kind)rp->kind);
}

int slice_files_start(const char *root, const char *name, enum slice_files_op op, const char *path,
		      int io_fd, struct slice_files_job *job, struct vs_error *err)
{
	*job = (struct slice_files_job){.pid = -1, .status_fd = -1, .commit_fd = -1};
	struct slice_spec spec;
	struct slice_state st;
	int r = slice_load(root, name, &spec, &st, err);
	if (r < 0)
		return r;
	cleanup_free char *image = NULL;
	cleanup_free char *sdir = slice_dir(root, name);
	cleanup_free char *lower_copy = vs_xasprintf("%s/lower-copy", sdir);
	cleanup_close int pidfd = -1;
	bool stopped = true;
	if ((st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) && st.pid > 0) {
		pidfd = pidfd_open(st.pid, 0);
		/* Still PID 1 of this slice once we hold it: not a reused pid. */
		stopped = pidfd < 0 || slice_pid1(root, name) != st.pid;
		if (stopped && pidfd >= 0) {
			close(pidfd);
			pidfd = -1;
		}
	}
	if (stopped && (r = image_rootfs(root, spec.image, &image, err)) < 0)
		r = vs_error_wrap(err, "slice %s", name);
	struct files_work wk = {
	    .root = root,
	    .name = name,
	    .path = path,
	    .op = op,
	    .stopped = stopped,
	    .idmapped = st.idmapped,
	    .volatile_upper = spec.ephemeral,
	    .id_base = spec.id_base,
	    .image_rootfs = image,
	    .lower_copy = lower_copy,
	};
	slice_spec_free(&spec);
	if (r < 0 || (r = archive_dl_load(err)) < 0)
		return r;
	int sp[2], cp[2] = {-1, -1};
	if (pipe2(sp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	if (op == SLICE_FILES_PUT && pipe2(cp, O_CLOEXEC) < 0) {
		r = vs_error_sys(err, errno, "pipe");
		close(sp[0]);
		close(sp[1]);
		return r;
	}
	pid_t pid = fork();
	if (pid < 0) {
		r = vs_error_sys(err, errno, "fork");
		close(sp[0]);
		close(sp[1]);
		if (cp[0] >= 0) {
			close(cp[0]);
			close(cp[1]);
		}
		return r;
	}
	if (pid == 0) {
		/* A daemon's threads may block signals (SIGPIPE, SIGTERM):
		 * this child takes the default ones, but never SIGPIPE (a
		 * reader that went away is an error to report). */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_IGN);
		int fds[4] = {io_fd, sp[1], cp[0], pidfd};
		child_fds(fds, 4);
		wk.io_fd = fds[0];
		wk.status_fd = fds[1];
		wk.commit_fd = fds[2];
		wk.pidfd = fds[3];
		struct vs_error cerr = {0};
		r = child_main(&wk, &cerr);
		if (r < 0 && !cerr.code)
			vs_error_set(&cerr, EIO, "failed");
		report(wk.status_fd, REPORT_DONE, r < 0 ? &cerr : NULL);
		_exit(r < 0 ? 1 : 0);
	}
	close(sp[1]);
	if (cp[0] >= 0)
		close(cp[0]);
	job->pid = pid;
	job->status_fd = sp[0];
	job->commit_fd = cp[1];
	struct report rp;
	if (read_report(job, &rp) < 0) {
		job_close(job);
		return reap(job, err);
	}
	if (rp.phase == REPORT_READY)
		return 0;
	/* It failed before it was ready: its error, nothing done. */
	rp.code = rp.code ? rp.code : EIO;
	return job_done(job, &rp, err);
}

void slice_files_commit(struct slice_files_job *job)
{
	if (job->commit_fd >= 0) {
		(void)!write(job->commit_fd, "c", 1);
		close(job->commit_fd);
		job->commit_fd = -1;
	}
}

int slice_files_finish(struct slice_files_job *job, struct vs_error *err)
{
	if (job->pid < 0)
		return 0;
	/* A PUT not committed now never will be: the child gives up. */
	if (job->commit_fd >= 0) {
		close(job->commit_fd);
		job->commit_fd = -1;
	}
	struct report rp;
	if (read_report(job, &rp) < 0 || rp.phase != REPORT_DONE) {
		job_close(job);
		return reap(job, err);
	}
	return job_done(job, &rp, err);
}

/* ---- local copies ------------------------------------------------------- */

int slice_files_copy_in(const char *root, const char *name, const char *host_src, const char *path,
			struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	struct slice_files_job job;
	int r = slice_files_start(root, name, SLICE_FILES_PUT, path, p[0], &job, err);
	close(p[0]);
	if (r < 0) {
		close(p[1]);
		return r;
	}
	struct vs_error perr = {0};
	int pr = slice_files_pack(host_src, p[1], &perr);
	close(p[1]);
	if (pr == 0)
		slice_files_commit(&job);
	int fr = slice_files_finish(&job, err);
	/* The packer's own failure explains the child's "cut short". */
	if (pr < 0 && (perr.code != EPIPE || fr == 0)) {
		*err = perr;
		return pr;
	}
	return fr;
}

static int commit_finish(void *arg, struct vs_error *err)
{
	return slice_files_finish(arg, err);
}

int slice_files_copy_out(const char *root, const char *name, const char *path, const char *host_dst,
			 struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	struct slice_files_job job;
	int r = slice_files_start(root, name, SLICE_FILES_GET, path, p[1], &job, err);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	r = slice_files_unpack(host_dst, p[0], commit_finish, &job, err);
	close(p[0]);
	if (job.pid >= 0) {
		/* The unpack failed before the commit: the child's error, if
		 * it has one of its own, says more than a cut stream. */
		struct vs_error cerr = {0};
		if (slice_files_finish(&job, &cerr) < 0 && cerr.code != EPIPE) {
			*err = cerr;
			return -cerr.code;
		}
	}
	return r;
}

/*
 * slice_files_tar.c - the tar stream of slice_files.h: the packer (a file,
 * or a directory walked with *at() calls that never follow a symlink below
 * the top, as pax entries, the top under its own name, the rest below it in
 * pre-order) and the unpacker (the reverse, trusting nothing), used on the
 * host by slicectl and inside a slice by slice_files.c's child. The rules
 * the unpacker keeps are in slice_files.c's top comment.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "slice_files_int.h"
#include "vslice/idrange.h"
#include "vslice/slice_files.h"
#include "vslice/util.h"

#define FILES_IO_BUF	   (256u << 10)
#define FILES_HEADER_MAX   (2u << 20) /* input libarchive may read for one header */
#define FILES_DEPTH_MAX	   (PATH_MAX / 2 + 2)
#define FILES_TMP_PREFIX   ".vslice-cp-"
#define FILES_STAGE_RESOLV (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

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
const char *files_slice_rel(const char *path)
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

/* Resolve and open the top (following a final symlink where w allows). */
int files_pack_open(const struct files_where *w, const char *path, const char *shown,
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

int files_pack_run(struct pack_src *s, int out_fd, struct vs_error *err)
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
	if ((r = files_pack_open(&w, host_path, host_path, &s, err)) < 0)
		return r;
	r = files_pack_run(&s, out_fd, err);
	close(s.fd);
	return r;
}

/* ---- the unpacker ------------------------------------------------------- */

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
int files_unpack_open(struct unpacker *u, const char *dest, char name[NAME_MAX + 1])
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
	fd = where_open(u->w, u->w->host ? dir : files_slice_rel(dir), u->shown,
			O_PATH | O_DIRECTORY, u->err);
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

int files_unpack_run(struct unpacker *u, files_commit_fn commit, void *arg)
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
	if ((r = files_unpack_open(&u, host_dest, name)) < 0)
		return r;
	r = files_unpack_run(&u, commit, arg);
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
	return files_unpack_run(&u, NULL, NULL);
}

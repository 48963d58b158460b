/*
 * slice_xfer_recv.c - slice_fs_receive(): the receiving half of the
 * migration stream (format and guarantees: slice_xfer.c). Frames are read
 * and hashed, libarchive's tar reader parses the archive, each entry is
 * checked and created in the staging dir, and the result is swapped in
 * only after the trailer matched.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../image/archive_dl.h"
#include "vslice/idrange.h"
#include "vslice/slice.h"
#include "vslice/slice_xfer.h"
#include "vslice/util.h"

#include "slice_xfer_int.h"

/* ---- receiving: frames -------------------------------------------------- */

struct xfer_in {
	int fd;
	uint8_t *buf; /* FRAME_MAX + 4: a payload and the next frame's header */
	struct sha256_ctx hash;
	uint64_t bytes, next_progress;
	const struct slice_xfer_opts *o;
	uint8_t next[4];	/* the next frame's header, read with the last payload */
	bool have_next, cut;	/* ... or the stream ended inside it */
	bool ended;		/* the end frame was read */
	bool in_header;		/* libarchive is reading a header */
	uint64_t header_bytes;	/* stream bytes handed to it for this header */
	struct vs_error failed; /* why a read failed (code 0: none) */
};

static int in_truncated(struct xfer_in *s, const char *what)
{
	vs_error_set(&s->failed, EPIPE, "the stream ends in the middle of %s (truncated)", what);
	return vs_error_kind(&s->failed, VS_EK_REFUSED);
}

static void in_account(struct xfer_in *s, const void *p, size_t n)
{
	sha256_update(&s->hash, n, p);
	s->bytes += n;
	xfer_progress(s->o, s->bytes, &s->next_progress, false);
}

static int in_read(struct xfer_in *s, void *p, size_t n, const char *what)
{
	ssize_t k = vs_read_all(s->fd, p, n);
	if (k < 0)
		return vs_error_sys(&s->failed, (int)-k, "read the stream");
	if ((size_t)k < n)
		return in_truncated(s, what);
	in_account(s, p, n);
	return 0;
}

/* The next frame's payload (in s->buf): its length, 0 at the end frame,
 * < 0 on error. One read takes the payload and the header after it (the
 * end frame's header comes before the trailer: never a byte past it). */
static ssize_t in_frame(struct xfer_in *s)
{
	if (s->ended)
		return 0;
	if (s->cut)
		return in_truncated(s, "a frame header");
	uint32_t be;
	if (s->have_next)
		memcpy(&be, s->next, 4);
	else if (in_read(s, &be, 4, "a frame header") < 0)
		return -1;
	s->have_next = false;
	uint32_t len = be32toh(be);
	if (len == 0) {
		s->ended = true;
		return 0;
	}
	if (len > FRAME_MAX) {
		vs_error_set(&s->failed, EINVAL, "a frame of %u bytes (at most %u)", len,
			     FRAME_MAX);
		vs_error_kind(&s->failed, VS_EK_REFUSED);
		return -1;
	}
	ssize_t k = vs_read_all(s->fd, s->buf, (size_t)len + 4);
	if (k < 0)
		return vs_error_sys(&s->failed, (int)-k, "read the stream");
	if ((size_t)k < len)
		return in_truncated(s, "a frame");
	in_account(s, s->buf, (size_t)k);
	if ((size_t)k == (size_t)len + 4) {
		memcpy(s->next, s->buf + len, 4);
		s->have_next = true;
	} else {
		s->cut = (size_t)k > len; /* else: the next in_read finds the end */
	}
	return len;
}

static la_ssize_t in_archive_cb(struct archive *a, void *arg, const void **buf)
{
	struct xfer_in *s = arg;
	ssize_t n = in_frame(s);
	*buf = s->buf;
	if (n > 0 && s->in_header && (s->header_bytes += (uint64_t)n) > HEADER_INPUT_MAX) {
		vs_error_set(&s->failed, EINVAL, "an entry header longer than %u bytes",
			     HEADER_INPUT_MAX);
		vs_error_kind(&s->failed, VS_EK_REFUSED);
		return -1;
	}
	return n;
}

/* ---- receiving: entries ------------------------------------------------- */

struct xfer_rx {
	struct xfer_in in;
	struct archive *a;
	uint32_t id_base;
	int stage_fd; /* <upper's parent>/upper.xfer */
	int slice_fd; /* <root>/slices/<name> (the log's directory) */
	int log_fd;   /* <slice>/log.xfer while being written */
	bool have_log, have_upper;
	/* The walk: cur_fd is the directory `dir` (below stage_fd), depth
	 * levels down from "upper" (1); mtimes of the levels, set on leaving. */
	int cur_fd;
	char dir[PATH_MAX];
	size_t depth;
	struct timespec *mtimes; /* PATH_MAX / 2 + 2 levels */
	uint64_t files;
	struct vs_error *err;
};

static int rx_archive_err(struct xfer_rx *x, const char *what)
{
	if (x->in.failed.code) {
		*x->err = x->in.failed;
		return -x->err->code;
	}
	const char *s = archive_error_string(x->a);
	return xfer_refuse(x->err, "%s: %s", what, s ? s : "not a valid archive");
}

/* A relative path of plain components; dirs may end in one '/'. what
 * names it in a refusal ("entry", or the link whose target it is). */
static int rx_check_path(struct xfer_rx *x, const char *raw, char out[PATH_MAX], bool dir,
			 const char *what)
{
	size_t n = strnlen(raw, PATH_MAX);
	if (n == 0 || n >= PATH_MAX)
		return xfer_refuse(x->err, "%s: an empty or too long path", what);
	memcpy(out, raw, n + 1);
	if (dir && n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	if (out[0] == '/')
		return xfer_refuse(x->err, "%s \"%s\": absolute path", what, out);
	for (const char *c = out; *c;) {
		size_t k = strcspn(c, "/");
		if (k == 0)
			return xfer_refuse(x->err, "%s \"%s\": empty path component", what, out);
		if ((k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
			return xfer_refuse(x->err, "%s \"%s\": \"%.*s\" path component", what, out,
					   (int)k, c);
		if (k > NAME_MAX)
			return xfer_refuse(x->err, "%s \"%s\": a component longer than %d bytes",
					   what, out, NAME_MAX);
		c += k;
		if (*c == '/' && !*++c)
			return xfer_refuse(x->err, "%s \"%s\": empty path component", what, out);
	}
	return 0;
}

static int rx_id(struct xfer_rx *x, const char *path, const char *what, int64_t rel, uint32_t *id)
{
	if (rel < 0 || rel >= (int64_t)IDRANGE_SIZE)
		return xfer_refuse(x->err, "entry \"%s\": %s %lld outside the slice's range 0..%u",
				   path, what, (long long)rel, IDRANGE_SIZE - 1);
	*id = x->id_base + (uint32_t)rel;
	return 0;
}

/* Leave the current directory: its mtime, then its parent. */
static int rx_pop(struct xfer_rx *x)
{
	struct timespec ts[2] = {x->mtimes[x->depth], x->mtimes[x->depth]};
	if (futimens(x->cur_fd, ts) < 0)
		return vs_error_sys(x->err, errno, "%s: set mtime", x->dir);
	/* Out of "upper": the walk is over (and no fd may hold a --disk
	 * slice's detached mount past the call). */
	int up = x->depth == 1
		     ? -1
		     : openat(x->cur_fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (up < 0 && x->depth > 1)
		return vs_error_sys(x->err, errno, "%s: open ..", x->dir);
	close(x->cur_fd);
	x->cur_fd = up;
	x->depth--;
	char *slash = strrchr(x->dir, '/');
	if (slash)
		*slash = '\0';
	else
		x->dir[0] = '\0';
	return 0;
}

/* Go up the walk to the directory parent (an entry's dirname). */
static int rx_enter(struct xfer_rx *x, const char *path, const char *parent)
{
	while (x->depth > 0 && strcmp(x->dir, parent) != 0) {
		int r = rx_pop(x);
		if (r < 0)
			return r;
	}
	if (x->depth == 0)
		return xfer_refuse(
		    x->err,
		    "entry \"%s\": its directory is not one the stream made before it "
		    "(not in walk order, or through a non-directory)",
		    path);
	return 0;
}

static int rx_push(struct xfer_rx *x, int fd, const char *path, const struct timespec *mt)
{
	if (x->depth + 1 >= PATH_MAX / 2 + 2) {
		close(fd);
		return xfer_refuse(x->err, "entry \"%s\": too deep", path);
	}
	if (x->depth > 0)
		close(x->cur_fd);
	x->cur_fd = fd;
	x->depth++;
	x->mtimes[x->depth] = *mt;
	snprintf(x->dir, sizeof(x->dir), "%s", path);
	return 0;
}

static bool xattr_allowed(const char *k, mode_t type)
{
	if (type != AE_IFREG && type != AE_IFDIR)
		return false;
	if (!strncmp(k, "user.", 5))
		return true;
	if (!strcmp(k, "security.capability"))
		return type == AE_IFREG;
	return !strncmp(k, "trusted.overlay.", 16) && strcmp(k, "trusted.overlay.origin") != 0 &&
	       strcmp(k, "trusted.overlay.upper") != 0 &&
	       strcmp(k, "trusted.overlay.metacopy") != 0;
}

static int rx_xattrs(struct xfer_rx *x, struct archive_entry *e, int fd, const char *path,
		     mode_t type)
{
	const char *k;
	const void *v;
	size_t n;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &k, &v, &n) == ARCHIVE_OK) {
		if (!k || !xattr_allowed(k, type))
			return xfer_refuse(x->err, "entry \"%s\": xattr \"%s\" is not accepted",
					   path, k ? k : "");
		if (n > XATTR_VAL_MAX)
			return xfer_refuse(x->err, "entry \"%s\": xattr %s of %zu bytes", path, k,
					   n);
		struct vfs_ns_cap_data cap;
		if (!strcmp(k, "security.capability")) {
			/* Only v3 with a root relative to the range: the host must
			 * never get a capability that applies outside the slice. */
			uint32_t magic, rel;
			if (n != XATTR_CAPS_SZ_3)
				return xfer_refuse(x->err,
						   "entry \"%s\": a file capability that is "
						   "not v3 (%zu bytes)",
						   path, n);
			memcpy(&cap, v, n);
			magic = le32toh(cap.magic_etc);
			rel = le32toh(cap.rootid);
			if ((magic & VFS_CAP_REVISION_MASK) != VFS_CAP_REVISION_3 ||
			    (magic & ~(VFS_CAP_REVISION_MASK | VFS_CAP_FLAGS_EFFECTIVE)))
				return xfer_refuse(
				    x->err, "entry \"%s\": a bad file capability header", path);
			uint32_t root = 0;
			int r = rx_id(x, path, "capability root", rel, &root);
			if (r < 0)
				return r;
			cap.rootid = htole32(root);
			v = &cap;
		}
		if (fsetxattr(fd, k, v, n, 0) < 0)
			return vs_error_sys(x->err, errno, "%s: set xattr %s", path, k);
	}
	return 0;
}

/* Data of the current entry into fd (NULL fd: there must be none). */
static int rx_data(struct xfer_rx *x, int fd, const char *path, int64_t *end)
{
	*end = 0;
	for (;;) {
		const void *b;
		size_t n;
		la_int64_t off;
		int ar = archive_read_data_block(x->a, &b, &n, &off);
		if (ar == ARCHIVE_EOF)
			return 0;
		if (ar != ARCHIVE_OK)
			return rx_archive_err(x, path);
		if (!n)
			continue;
		if (fd < 0)
			return xfer_refuse(x->err, "entry \"%s\": carries data", path);
		if (off < 0 || (uint64_t)off + n > (uint64_t)INT64_MAX)
			return xfer_refuse(x->err, "entry \"%s\": data at a bad offset", path);
		for (size_t done = 0; done < n;) {
			ssize_t k = pwrite(fd, (const uint8_t *)b + done, n - done,
					   (off_t)(off + (la_int64_t)done));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return vs_error_sys(x->err, errno, "%s: write", path);
			done += (size_t)k;
		}
		if (off + (int64_t)n > *end)
			*end = off + (int64_t)n;
	}
}

static int rx_file_data(struct xfer_rx *x, struct archive_entry *e, int fd, const char *path)
{
	int64_t end, size = archive_entry_size(e);
	if (size < 0)
		return xfer_refuse(x->err, "entry \"%s\": bad size", path);
	int r = rx_data(x, fd, path, &end);
	if (r < 0)
		return r;
	/* Holes at the end, and the sender's size is the size. */
	if (end != size && ftruncate(fd, size) < 0)
		return vs_error_sys(x->err, errno, "%s: truncate", path);
	return 0;
}

static int rx_log(struct xfer_rx *x, struct archive_entry *e)
{
	if (x->have_log || x->have_upper || archive_entry_filetype(e) != AE_IFREG ||
	    archive_entry_hardlink(e))
		return xfer_refuse(x->err, "entry \"log\": not the first entry, or not a file");
	x->have_log = true;
	if (unlinkat(x->slice_fd, LOG_STAGING, 0) < 0 && errno != ENOENT)
		return vs_error_sys(x->err, errno, "%s", LOG_STAGING);
	x->log_fd = openat(x->slice_fd, LOG_STAGING,
			   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (x->log_fd < 0)
		return vs_error_sys(x->err, errno, "%s", LOG_STAGING);
	return rx_file_data(x, e, x->log_fd, "log");
}

static int rx_meta(struct xfer_rx *x, struct archive_entry *e, int fd, const char *path,
		   mode_t type, uint32_t uid, uint32_t gid)
{
	if (fchown(fd, uid, gid) < 0)
		return vs_error_sys(x->err, errno, "%s: chown", path);
	if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
		return vs_error_sys(x->err, errno, "%s: chmod", path);
	/* After chown and chmod: a chown drops a file capability. */
	return rx_xattrs(x, e, fd, path, type);
}

/* One entry below "upper" (or "upper" itself: path == "upper"). */
static int rx_upper_entry(struct xfer_rx *x, struct archive_entry *e, const char *path)
{
	struct vs_error *err = x->err;
	mode_t type = archive_entry_filetype(e);
	const char *hl = archive_entry_hardlink(e);
	bool top = !strcmp(path, "upper");
	if (top && (x->have_upper || type != AE_IFDIR || hl))
		return xfer_refuse(err, "entry \"upper\": twice, or not a directory");
	if (!top && !x->have_upper)
		return xfer_refuse(err, "entry \"%s\": before \"upper\"", path);
	const char *base = path;
	int dfd = x->stage_fd;
	char parent[PATH_MAX];
	if (!top) {
		const char *slash = strrchr(path, '/');
		memcpy(parent, path, (size_t)(slash - path));
		parent[slash - path] = '\0';
		base = slash + 1;
		int r = rx_enter(x, path, parent);
		if (r < 0)
			return r;
		dfd = x->cur_fd;
	}
	uint32_t uid = 0, gid = 0;
	int r;
	if ((r = rx_id(x, path, "uid", archive_entry_uid(e), &uid)) < 0 ||
	    (r = rx_id(x, path, "gid", archive_entry_gid(e), &gid)) < 0)
		return r;
	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	if (mt.tv_nsec < 0 || mt.tv_nsec >= 1000000000)
		mt.tv_nsec = 0;
	struct timespec ts[2] = {mt, mt};
	x->files++;

	if (hl) {
		/* A second name of a file sent before, below upper/. */
		char target[PATH_MAX];
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "entry \"%s\": hard link target", path);
		if ((r = rx_check_path(x, hl, target, false, what)) < 0)
			return r;
		if (strncmp(target, "upper/", 6) != 0)
			return xfer_refuse(err, "entry \"%s\": hard link to \"%s\", outside upper/",
					   path, target);
		char *slash = strrchr(target, '/');
		*slash = '\0';
		struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
						  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
		cleanup_close int tdir =
		    (int)syscall(SYS_openat2, x->stage_fd, target, &how, sizeof(how));
		if (tdir < 0)
			return xfer_refuse(err,
					   "entry \"%s\": hard link target directory \"%s\": %s",
					   path, target, strerror(errno));
		if (linkat(tdir, slash + 1, dfd, base, 0) < 0)
			return xfer_refuse(err, "entry \"%s\": hard link to \"%s/%s\": %s", path,
					   target, slash + 1, strerror(errno));
		int64_t end;
		return rx_data(x, -1, path, &end);
	}

	cleanup_close int fd = -1;
	switch (type) {
	case AE_IFDIR:
		if (mkdirat(dfd, base, 0700) < 0)
			return errno == EEXIST ? xfer_refuse(err, "entry \"%s\": twice", path)
					       : vs_error_sys(err, errno, "%s: mkdir", path);
		fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: open", path);
		if ((r = rx_meta(x, e, fd, path, type, uid, gid)) < 0)
			return r;
		if (top)
			x->have_upper = true;
		return rx_push(x, steal_fd(&fd), path, &mt);
	case AE_IFREG:
		fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno == EEXIST ? xfer_refuse(err, "entry \"%s\": twice", path)
					       : vs_error_sys(err, errno, "%s: create", path);
		if ((r = rx_file_data(x, e, fd, path)) < 0 ||
		    (r = rx_meta(x, e, fd, path, type, uid, gid)) < 0)
			return r;
		if (futimens(fd, ts) < 0)
			return vs_error_sys(err, errno, "%s: set mtime", path);
		return 0;
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		if (!target || !*target || strlen(target) >= PATH_MAX)
			return xfer_refuse(err, "entry \"%s\": a symlink without a target", path);
		if (symlinkat(target, dfd, base) < 0)
			return errno == EEXIST ? xfer_refuse(err, "entry \"%s\": twice", path)
					       : vs_error_sys(err, errno, "%s: symlink", path);
		break;
	}
	case AE_IFIFO:
	case AE_IFCHR:
		if (type == AE_IFCHR &&
		    (archive_entry_rdevmajor(e) != 0 || archive_entry_rdevminor(e) != 0))
			return xfer_refuse(err, "entry \"%s\": device %u:%u (only 0:0 whiteouts)",
					   path, (unsigned)archive_entry_rdevmajor(e),
					   (unsigned)archive_entry_rdevminor(e));
		if (mknodat(dfd, base, type == AE_IFIFO ? S_IFIFO | 0600 : S_IFCHR, makedev(0, 0)) <
		    0)
			return errno == EEXIST ? xfer_refuse(err, "entry \"%s\": twice", path)
					       : vs_error_sys(err, errno, "%s: mknod", path);
		if (fchmodat(dfd, base, archive_entry_perm(e) & 07777, 0) < 0)
			return vs_error_sys(err, errno, "%s: chmod", path);
		break;
	default:
		return xfer_refuse(err, "entry \"%s\": file type 0%o is not accepted", path,
				   (unsigned)type);
	}
	/* Symlinks, fifos, whiteouts: no xattrs, no data. */
	archive_entry_xattr_reset(e);
	if (archive_entry_xattr_count(e) > 0)
		return xfer_refuse(err, "entry \"%s\": xattrs on a file of this type", path);
	if (fchownat(dfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return vs_error_sys(err, errno, "%s: chown", path);
	if (utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return vs_error_sys(err, errno, "%s: set mtime", path);
	int64_t end;
	return rx_data(x, -1, path, &end);
}

static int rx_entry(struct xfer_rx *x, struct archive_entry *e)
{
	char path[PATH_MAX];
	const char *raw = archive_entry_pathname(e);
	if (!raw)
		return xfer_refuse(x->err, "an entry without a path");
	int r = rx_check_path(x, raw, path, archive_entry_filetype(e) == AE_IFDIR, "entry");
	if (r < 0)
		return r;
	if (!strcmp(path, "log"))
		return rx_log(x, e);
	if (!strcmp(path, "upper") || !strncmp(path, "upper/", 6))
		return rx_upper_entry(x, e, path);
	return xfer_refuse(x->err, "entry \"%s\": neither the log nor below upper/", path);
}

/* The archive to its end, then the trailer. */
static int rx_stream(struct xfer_rx *x)
{
	struct vs_error *err = x->err;
	uint8_t magic[XFER_MAGIC_LEN];
	if (in_read(&x->in, magic, sizeof(magic), "the stream header") < 0) {
		*err = x->in.failed;
		return -err->code;
	}
	if (memcmp(magic, XFER_MAGIC, XFER_MAGIC_LEN) != 0)
		return xfer_refuse(err, "not a vslice file system stream (bad magic or version)");
	if (archive_read_support_format_tar(x->a) != ARCHIVE_OK ||
	    archive_read_open(x->a, &x->in, NULL, in_archive_cb, NULL) != ARCHIVE_OK)
		return rx_archive_err(x, "open the archive");
	for (;;) {
		struct archive_entry *e;
		x->in.in_header = true;
		x->in.header_bytes = 0;
		int ar = archive_read_next_header(x->a, &e);
		x->in.in_header = false;
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK)
			return rx_archive_err(x, "read an entry header");
		int r = rx_entry(x, e);
		if (r < 0)
			return r;
	}
	if (!x->have_log || !x->have_upper)
		return xfer_refuse(err, "the stream has no %s", x->have_log ? "upper dir" : "log");
	while (x->depth > 0) {
		int r = rx_pop(x);
		if (r < 0)
			return r;
	}
	/* Whatever follows the archive's end marker up to the end frame. */
	uint64_t extra = 0;
	ssize_t n;
	while ((n = in_frame(&x->in)) > 0)
		if ((extra += (uint64_t)n) > AFTER_END_MAX)
			return xfer_refuse(err, "more than %u bytes after the end of the archive",
					   AFTER_END_MAX);
	if (n < 0) {
		*err = x->in.failed;
		return -err->code;
	}
	uint8_t want[SHA256_DIGEST_SIZE], got[SHA256_DIGEST_SIZE];
	sha256_digest(&x->in.hash, sizeof(want), want);
	ssize_t k = vs_read_all(x->in.fd, got, sizeof(got));
	if (k < 0)
		return vs_error_sys(err, (int)-k, "read the stream");
	if (k != (ssize_t)sizeof(got))
		return xfer_refuse(err, "the stream ends before its checksum (truncated)");
	x->in.bytes += sizeof(got);
	if (memcmp(want, got, sizeof(want)) != 0)
		return xfer_refuse(err, "sha256 mismatch: the stream was corrupted");
	return 0;
}

struct recv_ctx {
	const char *root, *name;
	int in_fd;
	const struct slice_xfer_opts *o;
	uint32_t id_base;
	bool disk;
	uint64_t bytes, files;
};

/* rm -rf of name in the directory dfd (which may be on a detached mount). */
static void remove_at(int dfd, const char *name)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dfd, name);
	struct vs_error ignore;
	vs_rm_rf(p, &ignore);
}

/*
 * The staged upper dir and log become the slice's: both exchanged (the old
 * ones end up in the staging places, removed after), then the directories
 * synced. A failure at any step puts back what was already swapped.
 */
static int swap_in(int parent, int stage, int sfd, bool disk, struct vs_error *err)
{
	struct stat st;
	bool had_log = fstatat(sfd, "log", &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat2(stage, "upper", parent, "upper", RENAME_EXCHANGE) < 0)
		return vs_error_sys(err, errno, "swap in the received upper dir");
	int r = 0;
	if (renameat2(sfd, LOG_STAGING, sfd, "log", had_log ? RENAME_EXCHANGE : RENAME_NOREPLACE) <
	    0) {
		r = vs_error_sys(err, errno, "swap in the received log");
	} else if (fsync(parent) < 0 || (disk && fsync(sfd) < 0)) {
		r = vs_error_sys(err, errno, "sync the swap");
		if (had_log)
			renameat2(sfd, LOG_STAGING, sfd, "log", RENAME_EXCHANGE);
		else
			renameat2(sfd, "log", sfd, LOG_STAGING, RENAME_NOREPLACE);
	}
	if (r < 0)
		renameat2(stage, "upper", parent, "upper", RENAME_EXCHANGE);
	return r;
}

static int recv_upper(void *arg, int upper_fd, struct vs_error *err)
{
	struct recv_ctx *c = arg;
	int r;
	if (c->disk && (r = xfer_require_stopped(c->root, c->name, err)) < 0)
		return r;
	/* The upper dir's parent: the slice dir, or the root of its image. */
	cleanup_close int parent = openat(upper_fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cleanup_free char *sdir = slice_dir(c->root, c->name);
	cleanup_close int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (parent < 0 || sfd < 0)
		return vs_error_sys(err, errno, "%s: open", sdir);
	/* Left by a receive that crashed: ours. */
	remove_at(parent, STAGING);
	if (mkdirat(parent, STAGING, 0700) < 0)
		return vs_error_sys(err, errno, "staging dir %s", STAGING);
	cleanup_close int stage = openat(parent, STAGING, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (stage < 0) {
		r = vs_error_sys(err, errno, "staging dir %s", STAGING);
		remove_at(parent, STAGING);
		return r;
	}
	cleanup_free uint8_t *fbuf = vs_xmalloc(FRAME_MAX + 4);
	cleanup_free struct timespec *mtimes =
	    vs_xcalloc(PATH_MAX / 2 + 2, sizeof(struct timespec));
	cleanup_archive_read struct archive *a = archive_read_new();
	if (!a)
		abort();
	struct xfer_rx x = {
	    .in = {.fd = c->in_fd, .buf = fbuf, .o = c->o, .next_progress = PROGRESS_STEP},
	    .a = a,
	    .id_base = c->id_base,
	    .stage_fd = stage,
	    .slice_fd = sfd,
	    .log_fd = -1,
	    .cur_fd = -1,
	    .mtimes = mtimes,
	    .err = err,
	};
	sha256_init(&x.in.hash);
	r = rx_stream(&x);
	if (x.depth > 0)
		close(x.cur_fd);
	/* On disk before the renames make it the slice's: the log (on the
	 * host when the upper dir is in a --disk image) by itself, the upper
	 * dir's file system in one syncfs() rather than a fsync per file;
	 * then the renames themselves. */
	if (r == 0 && ((c->disk && fdatasync(x.log_fd) < 0) || syncfs(stage) < 0))
		r = vs_error_sys(err, errno, "sync the received files");
	if (x.log_fd >= 0)
		close(x.log_fd);
	if (r == 0)
		r = swap_in(parent, stage, sfd, c->disk, err);
	/* Failure: what was staged. Success: the old upper dir and log. */
	unlinkat(sfd, LOG_STAGING, 0);
	remove_at(parent, STAGING);
	c->bytes = x.in.bytes;
	c->files = x.files + x.have_log;
	if (r == 0)
		xfer_progress(c->o, c->bytes, &x.in.next_progress, true);
	return r;
}

int slice_fs_receive(const char *root, const char *name, int in_fd, const struct slice_xfer_opts *o,
		     struct slice_xfer_stats *st, struct vs_error *err)
{
	uint64_t t0 = xfer_now_us();
	struct recv_ctx c = {.root = root, .name = name, .in_fd = in_fd, .o = o};
	if (xfer_with_upper(root, name, true, &c.id_base, &c.disk, recv_upper, &c, err) < 0) {
		if (err->code == ENOSPC || err->code == EDQUOT)
			vs_error_kind(err, VS_EK_LIMIT);
		return vs_error_wrap(err, "receive slice %s", name);
	}
	if (st)
		*st = (struct slice_xfer_stats){c.bytes, c.files, xfer_now_us() - t0};
	return 0;
}

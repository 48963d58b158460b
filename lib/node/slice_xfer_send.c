/*
 * slice_xfer_send.c - slice_fs_send(): the sending half of the migration
 * stream (format and guarantees: slice_xfer.c). A pre-order walk of the
 * upper dir (never following a symlink) into libarchive's pax writer,
 * whose output is cut into frames, hashed and written out.
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

/* ---- sending: frames ---------------------------------------------------- */

struct xfer_out {
	int fd;
	uint8_t *buf; /* 4 header bytes + FRAME_MAX */
	size_t used;  /* payload bytes in buf */
	struct sha256_ctx hash;
	uint64_t bytes, next_progress;
	const struct slice_xfer_opts *o;
	int error; /* errno of the first failed write */
};

static int out_raw(struct xfer_out *w, const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		sha256_update(&w->hash, iov[i].iov_len, iov[i].iov_base);
	struct iovec v[2];
	memcpy(v, iov, (size_t)n * sizeof(*iov));
	struct iovec *p = v;
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += v[i].iov_len;
	while (total > 0) {
		ssize_t k = writev(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -(w->error = errno);
		total -= (size_t)k;
		while (n > 0 && (size_t)k >= p->iov_len) {
			k -= (ssize_t)p->iov_len;
			p++;
			n--;
		}
		if (n > 0) {
			p->iov_base = (uint8_t *)p->iov_base + k;
			p->iov_len -= (size_t)k;
		}
	}
	return 0;
}

/* One frame: header + payload, in one writev. */
static int out_frame(struct xfer_out *w, const void *data, size_t len)
{
	uint8_t hdr[4];
	uint32_t be = htobe32((uint32_t)len);
	memcpy(hdr, &be, 4);
	struct iovec iov[2] = {{hdr, 4}, {(void *)data, len}};
	int r = out_raw(w, iov, len ? 2 : 1);
	if (r < 0)
		return r;
	w->bytes += 4 + len;
	xfer_progress(w->o, w->bytes, &w->next_progress, false);
	return 0;
}

static int out_flush(struct xfer_out *w)
{
	if (!w->used)
		return 0;
	int r = out_frame(w, w->buf, w->used);
	w->used = 0;
	return r;
}

/* libarchive's write callback: small writes (headers) gather in the frame
 * buffer, big ones (file data) go out as frames of their own. */
static la_ssize_t out_archive_cb(struct archive *a, void *arg, const void *data, size_t len)
{
	struct xfer_out *w = arg;
	const uint8_t *p = data;
	size_t left = len;
	if (w->fd < 0)
		return -1;
	if (len >= FRAME_DIRECT) {
		if (out_flush(w) < 0)
			return -1;
		while (left) {
			size_t n = left < FRAME_MAX ? left : FRAME_MAX;
			if (out_frame(w, p, n) < 0)
				return -1;
			p += n;
			left -= n;
		}
		return (la_ssize_t)len;
	}
	while (left) {
		size_t n = FRAME_MAX - w->used;
		if (n > left)
			n = left;
		memcpy(w->buf + w->used, p, n);
		w->used += n;
		p += n;
		left -= n;
		if (w->used == FRAME_MAX && out_flush(w) < 0)
			return -1;
	}
	return (la_ssize_t)len;
}

/* The end frame and the trailer. */
static int out_finish(struct xfer_out *w)
{
	if (out_flush(w) < 0 || out_frame(w, NULL, 0) < 0)
		return -w->error;
	uint8_t digest[SHA256_DIGEST_SIZE];
	struct sha256_ctx copy = w->hash;
	sha256_digest(&copy, sizeof(digest), digest);
	int r = vs_write_all(w->fd, digest, sizeof(digest));
	if (r < 0)
		return -(w->error = -r);
	w->bytes += sizeof(digest);
	xfer_progress(w->o, w->bytes, &w->next_progress, true);
	return 0;
}

/* ---- sending: entries ----------------------------------------------------- */

struct xfer_tx {
	struct xfer_out out;
	struct archive *a;
	struct archive_entry *e;
	struct archive_entry_linkresolver *links;
	uint32_t id_base;
	uint8_t *buf;	/* IO_BUF */
	uint8_t *zeros; /* ZERO_BUF of untouched zero pages */
	char *xlist;	/* XLIST_MAX */
	uint8_t *xval;	/* XATTR_VAL_MAX */
	char path[PATH_MAX];
	uint64_t files;
	struct vs_error *err;
};

static int tx_archive_err(struct xfer_tx *t, const char *what)
{
	if (t->out.error)
		return vs_error_sys(t->err, t->out.error, "write the stream");
	const char *s = archive_error_string(t->a);
	int e = archive_errno(t->a);
	return vs_error_set(t->err, e > 0 ? e : EIO, "%s %s: %s", what, t->path,
			    s ? s : "archive error");
}

/* An id as the slice sees it: relative to its range; ids outside it are
 * the overflow id there, "nobody". */
static uint32_t rel_id(uint32_t id, uint32_t base, bool *foreign)
{
	if (id >= base && id - base < IDRANGE_SIZE)
		return id - base;
	*foreign = true;
	return REL_NOBODY;
}

/*
 * A file capability as the slice sees it: v3 with a root id relative to
 * the range. v1/v2 (host-root caps, copied up from the image) become v3
 * for the slice's root: they then apply in the slice, never on a host.
 * One whose root is outside the range applies nowhere the slice can
 * reach: dropped (returns 0).
 */
static size_t cap_to_rel(const uint8_t *v, size_t n, uint32_t base, uint8_t out[XATTR_CAPS_SZ_3])
{
	if (n < 4)
		return 0;
	uint32_t magic;
	memcpy(&magic, v, 4);
	magic = le32toh(magic);
	uint32_t rev = magic & VFS_CAP_REVISION_MASK;
	struct vfs_ns_cap_data c = {0};
	if (rev == VFS_CAP_REVISION_1 && n == XATTR_CAPS_SZ_1) {
		memcpy(&c.data[0], v + 4, 8);
	} else if (rev == VFS_CAP_REVISION_2 && n == XATTR_CAPS_SZ_2) {
		memcpy(&c.data, v + 4, 16);
	} else if (rev == VFS_CAP_REVISION_3 && n == XATTR_CAPS_SZ_3) {
		uint32_t root;
		memcpy(&c.data, v + 4, 16);
		memcpy(&root, v + 20, 4);
		root = le32toh(root);
		if (root < base || root - base >= IDRANGE_SIZE)
			return 0;
		c.rootid = htole32(root - base);
	} else {
		return 0;
	}
	c.magic_etc = htole32(VFS_CAP_REVISION_3 | (magic & VFS_CAP_FLAGS_EFFECTIVE));
	memcpy(out, &c, XATTR_CAPS_SZ_3);
	return XATTR_CAPS_SZ_3;
}

static bool xattr_sent(const char *k)
{
	if (!strncmp(k, "user.", 5) || !strcmp(k, "security.capability"))
		return true;
	/* origin/upper are file handles of this node's layers: meaningless on
	 * another node, and a stale one can make the overlay fail a lookup. */
	return !strncmp(k, "trusted.overlay.", 16) && strcmp(k, "trusted.overlay.origin") != 0 &&
	       strcmp(k, "trusted.overlay.upper") != 0;
}

static int tx_xattrs(struct xfer_tx *t, int fd)
{
	ssize_t n = flistxattr(fd, t->xlist, XLIST_MAX);
	if (n < 0) {
		if (errno == ENOTSUP)
			return 0;
		return vs_error_sys(t->err, errno, "%s: list xattrs", t->path);
	}
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(t->xlist + off) + 1) {
		const char *k = t->xlist + off;
		if (!xattr_sent(k))
			continue;
		ssize_t vl = fgetxattr(fd, k, t->xval, XATTR_VAL_MAX);
		if (vl < 0 && errno == ENODATA)
			continue;
		if (vl < 0)
			return vs_error_sys(t->err, errno, "%s: xattr %s", t->path, k);
		if (!strcmp(k, "security.capability")) {
			uint8_t cap[XATTR_CAPS_SZ_3];
			size_t cl = cap_to_rel(t->xval, (size_t)vl, t->id_base, cap);
			if (cl)
				archive_entry_xattr_add_entry(t->e, k, cap, cl);
			continue;
		}
		archive_entry_xattr_add_entry(t->e, k, t->xval, (size_t)vl);
	}
	return 0;
}

/* Data regions of a sparse file (SEEK_DATA/SEEK_HOLE) into the entry; a
 * file with more than SPARSE_MAX regions sends the rest as data. */
static int tx_sparse_map(struct xfer_tx *t, int fd, const struct stat *st)
{
	if ((uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size)
		return 0; /* no holes to speak of */
	off_t off = 0;
	unsigned n = 0;
	while (off < st->st_size) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0)
			return vs_error_sys(t->err, errno, "%s: seek data", t->path);
		off_t h = ++n == SPARSE_MAX ? st->st_size : lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return vs_error_sys(t->err, errno, "%s: seek hole", t->path);
		if (h > st->st_size)
			h = st->st_size;
		archive_entry_sparse_add_entry(t->e, d, h - d);
		off = h;
	}
	/* No data at all: one empty region marks it sparse. */
	if (n == 0)
		archive_entry_sparse_add_entry(t->e, st->st_size, 0);
	return 0;
}

static int tx_feed(struct xfer_tx *t, const void *p, size_t n)
{
	if (archive_write_data(t->a, p, n) != (la_ssize_t)n)
		return tx_archive_err(t, "write data of");
	return 0;
}

/* The file's bytes in order: data regions read, holes fed from the zero
 * buffer (the pax writer skips them without reading: they cost nothing). */
static int tx_data(struct xfer_tx *t, int fd, const struct stat *st)
{
	bool holes = (uint64_t)st->st_blocks * 512 < (uint64_t)st->st_size;
	off_t off = 0;
	while (off < st->st_size) {
		off_t d = holes ? lseek(fd, off, SEEK_DATA) : off;
		if (d < 0 && errno != ENXIO)
			return vs_error_sys(t->err, errno, "%s: seek data", t->path);
		if (d < 0 || d > st->st_size)
			d = st->st_size;
		off_t h = holes && d < st->st_size ? lseek(fd, d, SEEK_HOLE) : st->st_size;
		if (h < 0)
			return vs_error_sys(t->err, errno, "%s: seek hole", t->path);
		if (h > st->st_size)
			h = st->st_size;
		for (; off < d;) {
			size_t n = (uint64_t)(d - off) < ZERO_BUF ? (size_t)(d - off) : ZERO_BUF;
			int r = tx_feed(t, t->zeros, n);
			if (r < 0)
				return r;
			off += (off_t)n;
		}
		while (off < h) {
			size_t want = (uint64_t)(h - off) < IO_BUF ? (size_t)(h - off) : IO_BUF;
			ssize_t n = pread(fd, t->buf, want, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return vs_error_sys(t->err, errno, "%s: read", t->path);
			if (n == 0)
				return vs_error_set(t->err, EIO, "%s: shrank while being sent",
						    t->path);
			int r = tx_feed(t, t->buf, (size_t)n);
			if (r < 0)
				return r;
			off += n;
		}
	}
	return 0;
}

/* One entry: t->path is its name in the archive, dfd/name where it is. */
static int tx_entry(struct xfer_tx *t, int dfd, const char *name, const struct stat *st, bool log)
{
	struct vs_error *err = t->err;
	struct archive_entry *e = t->e;
	archive_entry_clear(e);
	archive_entry_set_pathname(e, t->path);
	mode_t type = st->st_mode & S_IFMT;
	mode_t perm = st->st_mode & 07777;
	bool foreign = false;
	uint32_t uid = rel_id(st->st_uid, t->id_base, &foreign);
	uint32_t gid = rel_id(st->st_gid, t->id_base, &foreign);
	bool whiteout = type == S_IFCHR && st->st_rdev == makedev(0, 0);
	if (whiteout) {
		/* Made by the overlay with its mounter's (host root's) ids: owner
		 * and mode mean nothing to it. */
		uid = gid = 0;
		foreign = false;
	}
	if (foreign || log)
		perm &= ~(mode_t)(S_ISUID | S_ISGID);
	if (log)
		uid = gid = 0;
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, uid);
	archive_entry_set_gid(e, gid);
	archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	cleanup_close int fd = -1;
	int r;
	switch (type) {
	case S_IFREG:
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: open", t->path);
		archive_entry_set_size(e, st->st_size);
		if ((r = tx_sparse_map(t, fd, st)) < 0)
			return r;
		break;
	case S_IFDIR:
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: open", t->path);
		break;
	case S_IFLNK: {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return vs_error_sys(err, errno, "%s: readlink", t->path);
		target[n] = '\0';
		archive_entry_set_symlink(e, target);
		break;
	}
	case S_IFIFO:
		break;
	case S_IFSOCK:
		return 0; /* a socket's name is nothing without its listener (tar skips them too) */
	default:
		if (whiteout)
			break;
		vs_error_set(err, EINVAL,
			     "%s: a device node (%u:%u) other than an overlay whiteout: not sent",
			     t->path, major(st->st_rdev), minor(st->st_rdev));
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	if (fd >= 0 && !log && (r = tx_xattrs(t, fd)) < 0)
		return r;
	struct archive_entry *out = e;
	if (type != S_IFDIR && st->st_nlink > 1 && !log) {
		archive_entry_set_dev(e, st->st_dev);
		archive_entry_set_ino64(e, st->st_ino);
		archive_entry_set_nlink(e, st->st_nlink);
		struct archive_entry *spare = NULL;
		archive_entry_linkify(t->links, &out, &spare);
	}
	int ar = archive_write_header(t->a, out);
	if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
		return tx_archive_err(t, "write header of");
	t->files++;
	if (type == S_IFREG && !archive_entry_hardlink(out) && (r = tx_data(t, fd, st)) < 0)
		return r;
	return 0;
}

/* A slice that never ran detached has no log: an empty one. */
static int tx_empty_log(struct xfer_tx *t)
{
	archive_entry_clear(t->e);
	archive_entry_set_pathname(t->e, t->path);
	archive_entry_set_filetype(t->e, AE_IFREG);
	archive_entry_set_perm(t->e, 0600);
	archive_entry_set_size(t->e, 0);
	int ar = archive_write_header(t->a, t->e);
	if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
		return tx_archive_err(t, "write header of");
	t->files++;
	return 0;
}

/* Pre-order: each directory's entry, then what it holds. */
static int tx_walk(struct xfer_tx *t, int dfd)
{
	size_t plen = strlen(t->path);
	cleanup_closedir DIR *d = vs_opendirat(dfd, ".", 0);
	if (!d)
		return vs_error_sys(t->err, errno, "%s: open", t->path);
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (plen + 1 + strlen(n) >= sizeof(t->path))
			return vs_error_set(t->err, ENAMETOOLONG, "%s/%s: path too long", t->path,
					    n);
		t->path[plen] = '/';
		strcpy(t->path + plen + 1, n);
		struct stat st;
		if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(t->err, errno, "%s: stat", t->path);
		int r = tx_entry(t, dfd, n, &st, false);
		if (r == 0 && S_ISDIR(st.st_mode)) {
			cleanup_close int c =
			    openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = c < 0 ? vs_error_sys(t->err, errno, "%s: open", t->path)
				  : tx_walk(t, c);
		}
		t->path[plen] = '\0';
		if (r < 0)
			return r;
	}
	if (errno)
		return vs_error_sys(t->err, errno, "%s: read dir", t->path);
	return 0;
}

struct send_ctx {
	const char *root, *name;
	int out_fd;
	const struct slice_xfer_opts *o;
	uint32_t id_base;
	uint64_t bytes, files;
	bool disk;
};

/* The stream itself: magic, the archive (log, upper dir), end frame, trailer. */
static int tx_stream(struct xfer_tx *t, const struct send_ctx *c, int upper_fd)
{
	struct vs_error *err = t->err;
	int r;
	struct iovec magic = {(void *)XFER_MAGIC, XFER_MAGIC_LEN};
	if (out_raw(&t->out, &magic, 1) < 0)
		return vs_error_sys(err, t->out.error, "write the stream");
	t->out.bytes = XFER_MAGIC_LEN;
	if (archive_write_open(t->a, &t->out, NULL, out_archive_cb, NULL) != ARCHIVE_OK)
		return tx_archive_err(t, "open the archive for");

	/* The log: always an entry (empty if the slice has none). */
	cleanup_free char *sdir = slice_dir(c->root, c->name);
	cleanup_close int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return vs_error_sys(err, errno, "%s", sdir);
	struct stat st;
	snprintf(t->path, sizeof(t->path), "log");
	if (fstatat(sfd, "log", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return vs_error_sys(err, errno, "%s/log", sdir);
		r = tx_empty_log(t);
	} else if (!S_ISREG(st.st_mode)) {
		return vs_error_set(err, EINVAL, "%s/log: not a regular file", sdir);
	} else {
		r = tx_entry(t, sfd, "log", &st, true);
	}
	if (r < 0)
		return r;

	snprintf(t->path, sizeof(t->path), "upper");
	cleanup_close int ufd = openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0 || fstat(ufd, &st) < 0)
		return vs_error_sys(err, errno, "upper dir");
	if ((r = tx_entry(t, ufd, ".", &st, false)) < 0 || (r = tx_walk(t, ufd)) < 0)
		return r;
	if (archive_write_close(t->a) != ARCHIVE_OK)
		return tx_archive_err(t, "close the archive after");
	if (out_finish(&t->out) < 0)
		return vs_error_sys(err, t->out.error, "write the stream");
	return 0;
}

static int send_upper(void *arg, int upper_fd, struct vs_error *err)
{
	struct send_ctx *c = arg;
	int r;
	/* A --disk slice's lock is ours only now (slice_with_upper). */
	if (c->disk && (r = xfer_require_stopped(c->root, c->name, err)) < 0)
		return r;
	cleanup_free uint8_t *fbuf = vs_xmalloc(4 + FRAME_MAX);
	cleanup_free uint8_t *buf = vs_xmalloc(IO_BUF);
	cleanup_free uint8_t *zeros = vs_xcalloc(1, ZERO_BUF);
	cleanup_free char *xlist = vs_xmalloc(XLIST_MAX);
	cleanup_free uint8_t *xval = vs_xmalloc(XATTR_VAL_MAX);
	cleanup_archive_write struct archive *a = archive_write_new();
	cleanup_archive_entry struct archive_entry *e = archive_entry_new();
	cleanup_linkresolver struct archive_entry_linkresolver *links =
	    archive_entry_linkresolver_new();
	if (!a || !e || !links)
		abort();
	struct xfer_tx t = {
	    .out = {.fd = c->out_fd, .buf = fbuf, .o = c->o, .next_progress = PROGRESS_STEP},
	    .a = a,
	    .e = e,
	    .links = links,
	    .id_base = c->id_base,
	    .buf = buf,
	    .zeros = zeros,
	    .xlist = xlist,
	    .xval = xval,
	    .err = err,
	};
	sha256_init(&t.out.hash);
	archive_entry_linkresolver_set_strategy(links, ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
	/* Names are bytes (no charset conversion), no blocking: every byte
	 * libarchive writes reaches the callback at once, unpadded. */
	if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK)
		return tx_archive_err(&t, "set up the archive for");
	r = tx_stream(&t, c, upper_fd);
	/* libarchive's close on free writes the end marker: not after a failure. */
	if (r < 0)
		t.out.fd = -1;
	c->bytes = t.out.bytes;
	c->files = t.files;
	return r;
}

int slice_fs_send(const char *root, const char *name, int out_fd, const struct slice_xfer_opts *o,
		  struct slice_xfer_stats *st, struct vs_error *err)
{
	uint64_t t0 = xfer_now_us();
	struct send_ctx c = {.root = root, .name = name, .out_fd = out_fd, .o = o};
	if (xfer_with_upper(root, name, false, &c.id_base, &c.disk, send_upper, &c, err) < 0)
		return vs_error_wrap(err, "send slice %s", name);
	if (st)
		*st = (struct slice_xfer_stats){c.bytes, c.files, xfer_now_us() - t0};
	return 0;
}

/*
 * util.c - allocation that cannot fail silently, and the small file helpers
 * every module needs: atomic writes (temp + fsync + rename + dir fsync),
 * whole-file reads, mkdir -p, and an rm -rf that never follows a symlink or
 * crosses a mount point (it runs over directories a slice's root could have
 * planted things in).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vslice/util.h"

void *vs_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

void *vs_xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		abort();
	return p;
}

void *vs_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

char *vs_xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p)
		abort();
	return p;
}

char *vs_xasprintf(const char *fmt, ...)
{
	char *p;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		abort();
	return p;
}

int vs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

ssize_t vs_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int vs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			 struct vs_error *err)
{
	return vs_write_file_replace(path, data, len, mode, true, err);
}

int vs_write_file_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable,
			  struct vs_error *err)
{
	/* One temporary per thread: the node manager's threads may replace the
	 * same file at once (two first starts writing the cached init). */
	cleanup_free char *tmp = vs_xasprintf("%s.tmp.%d", path, (int)gettid());
	cleanup_free char *dircopy = vs_xstrdup(path);
	int r;
	{
		cleanup_close int fd =
		    open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: create", tmp);
		r = vs_write_all(fd, data, len);
		if (r == 0 && durable && fsync(fd) < 0)
			r = -errno;
		if (r < 0) {
			unlink(tmp);
			return vs_error_sys(err, -r, "%s: write", tmp);
		}
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return vs_error_sys(err, e, "%s: rename", path);
	}
	if (!durable)
		return 0;
	cleanup_close int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

int vs_write_str_at(int dirfd, const char *name, const char *s, struct vs_error *err)
{
	cleanup_close int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: open", name);
	ssize_t len = (ssize_t)strlen(s);
	ssize_t w = write(fd, s, (size_t)len);
	if (w != len)
		return vs_error_sys(err, w < 0 ? errno : EIO, "%s: write \"%s\"", name, s);
	return 0;
}

int vs_write_str(const char *path, const char *s, struct vs_error *err)
{
	return vs_write_str_at(AT_FDCWD, path, s, err);
}

int vs_read_file_at(int dirfd, const char *name, size_t max, char **out, size_t *len_out,
		    struct vs_error *err)
{
	if (max == 0)
		max = 16u << 20;
	cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: open", name);
	size_t cap = 4096, len = 0;
	cleanup_free char *buf = vs_xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= max)
				return vs_error_set(err, EFBIG, "%s: larger than %zu bytes", name,
						    max);
			cap = cap * 2 > max ? max : cap * 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				abort();
			buf = nb;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return vs_error_sys(err, errno, "%s: read", name);
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	if (len_out)
		*len_out = len;
	*out = steal_pointer(&buf);
	return 0;
}

int vs_read_file(const char *path, size_t max, char **out, size_t *len_out, struct vs_error *err)
{
	return vs_read_file_at(AT_FDCWD, path, max, out, len_out, err);
}

int vs_mkdir_p(const char *path, mode_t mode, struct vs_error *err)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return vs_error_set(err, ENAMETOOLONG, "%s: path too long", path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return vs_error_sys(err, errno, "%s: mkdir", buf);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

static int rm_rf_at(int parent, const char *name, dev_t dev, struct vs_error *err)
{
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "%s: stat", name);
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
			return vs_error_sys(err, errno, "%s: unlink", name);
		return 0;
	}
	if (st.st_dev != dev)
		return vs_error_set(err, EBUSY, "%s: is a mount point, not removing", name);
	cleanup_closedir DIR *d = vs_opendirat(parent, name, O_NOFOLLOW);
	if (!d)
		return vs_error_sys(err, errno, "%s: open", name);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = rm_rf_at(dirfd(d), de->d_name, dev, err);
		if (r < 0)
			return vs_error_wrap(err, "%s", name);
	}
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return vs_error_sys(err, errno, "%s: rmdir", name);
	return 0;
}

void vs_close_fds_but(int a, int b)
{
	int keep[2] = {a < b ? a : b, a < b ? b : a};
	unsigned next = 3;
	for (int i = 0; i < 2; i++) {
		if (keep[i] < 3)
			continue;
		if ((unsigned)keep[i] > next)
			close_range(next, (unsigned)keep[i] - 1, 0);
		if ((unsigned)keep[i] + 1 > next)
			next = (unsigned)keep[i] + 1;
	}
	close_range(next, ~0U, 0);
}

int vs_spawn_detached(void (*fn)(void *arg), void *arg, int keep)
{
	pid_t p = fork();
	if (p < 0)
		return -errno;
	if (p == 0) {
		if (fork() != 0)
			_exit(0);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		for (int i = 0; i < 3 && null >= 0; i++)
			dup2(null, i);
		vs_close_fds_but(keep, -1);
		fn(arg);
		_exit(0);
	}
	while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

int vs_send_fd(int sock, int fd, int flags)
{
	char byte = 0;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, flags) == 1 ? 0 : -errno;
}

int vs_recv_fd(int sock, int flags)
{
	char byte;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	while ((n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	int fd = -1;
	struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
	    cm->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

bool vs_dl_resolve(const char *lib, const struct vs_dlsym *syms, size_t n, char *why,
		   size_t why_len)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		if (why)
			snprintf(why, why_len, "cannot load %s (%s)", lib, dlerror());
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			if (why)
				snprintf(why, why_len, "%s lacks %s", lib, syms[i].name);
			for (size_t k = 0; k <= i; k++)
				*syms[k].slot = NULL;
			dlclose(h);
			return false;
		}
	}
	return true;
}

int vs_rm_rf(const char *path, struct vs_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "%s: stat", path);
	return rm_rf_at(AT_FDCWD, path, st.st_dev, err);
}

uint64_t vs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vs_strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static void sha256_hex(struct sha256_ctx *h, char out[VS_SHA256_HEX])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(h, sizeof(d), d);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

bool vs_sha256_hex_valid(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int vs_sha256_fd(int fd, char out[VS_SHA256_HEX])
{
	struct sha256_ctx h;
	sha256_init(&h);
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		sha256_update(&h, (size_t)n, (const uint8_t *)buf);
		off += n;
	}
	sha256_hex(&h, out);
	return 0;
}

void vs_sha256_buf(const void *buf, size_t len, char out[VS_SHA256_HEX])
{
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, len, buf);
	sha256_hex(&h, out);
}

DIR *vs_opendirat(int dfd, const char *name, int flags)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | flags);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (!d) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return d;
}

int vs_mkdirs_at(int dfd, const char *rel, mode_t mode, struct vs_error *err)
{
	cleanup_free char *copy = vs_xstrdup(rel);
	int cur = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return vs_error_sys(err, errno, "dup");
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (mkdirat(cur, c, mode) < 0 && errno != EEXIST) {
			int e = errno;
			close(cur);
			return vs_error_sys(err, e, "mkdir %s", c);
		}
		int n = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		if (n < 0)
			return vs_error_sys(err, e, "open %s", c);
		cur = n;
	}
	return cur;
}

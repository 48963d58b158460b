/*
 * util.h - cleanup attributes and small file helpers shared by every module.
 *
 * Ownership: a variable declared with a cleanup attribute is released when it
 * goes out of scope; hand it on with steal_pointer()/steal_fd().
 */
#ifndef VSLICE_UTIL_H
#define VSLICE_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "vslice/error.h"

static inline void vs_freep(void *p)
{
	free(*(void **)p);
}
static inline void vs_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void vs_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void vs_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define cleanup_free	 __attribute__((cleanup(vs_freep)))
#define cleanup_close	 __attribute__((cleanup(vs_closep)))
#define cleanup_fclose	 __attribute__((cleanup(vs_fclosep)))
#define cleanup_closedir __attribute__((cleanup(vs_closedirp)))

#define steal_pointer(pp)                                                                          \
	({                                                                                         \
		__typeof__(*(pp)) _p = *(pp);                                                      \
		*(pp) = NULL;                                                                      \
		_p;                                                                                \
	})
#define steal_fd(fdp)                                                                              \
	({                                                                                         \
		int _fd = *(fdp);                                                                  \
		*(fdp) = -1;                                                                       \
		_fd;                                                                               \
	})

#define VS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* malloc/strdup/asprintf that abort on allocation failure (the one allowed abort). */
void *vs_xmalloc(size_t n);
void *vs_xcalloc(size_t n, size_t m);
void *vs_xrealloc(void *p, size_t n);
char *vs_xstrdup(const char *s);
char *vs_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Write data to path atomically: write path.tmp, fsync, rename, fsync dir.
 * mode is the new file's permission bits.
 */
int vs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			 struct vs_error *err);
/* As above; durable false skips both fsyncs (the rename still makes the
 * replacement atomic for readers; a host crash may keep the old content). */
int vs_write_file_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable,
			  struct vs_error *err);

/* Write a short string to an existing file (cgroup/proc knobs): open O_WRONLY, one write. */
int vs_write_str(const char *path, const char *s, struct vs_error *err);
int vs_write_str_at(int dirfd, const char *name, const char *s, struct vs_error *err);

/*
 * Read a whole file (at most max bytes; 0 = 16 MiB) into a NUL-terminated buffer
 * the caller frees. *len_out (optional) gets the length.
 */
int vs_read_file(const char *path, size_t max, char **out, size_t *len_out, struct vs_error *err);
int vs_read_file_at(int dirfd, const char *name, size_t max, char **out, size_t *len_out,
		    struct vs_error *err);

/* A directory stream over name below dfd (name "." for dfd itself: the
 * stream has an fd of its own, dfd's offset is not moved), opened with
 * O_RDONLY | O_DIRECTORY | O_CLOEXEC | flags (e.g. O_NOFOLLOW). NULL with
 * errno set on failure; nothing left open. */
DIR *vs_opendirat(int dfd, const char *name, int flags);

/* mkdir -p with mode for the created components. Existing dirs are fine. */
int vs_mkdir_p(const char *path, mode_t mode, struct vs_error *err);

/* In a child that outlives its parent: close every fd from 3 up but a and
 * b (either may be -1). */
void vs_close_fds_but(int a, int b);

/* Run fn(arg) in a detached process (double fork: the caller waits only for
 * the first child, the second is reparented) with /dev/null as stdio and no
 * fd of the caller's but keep (-1: none): no lock the caller holds, nothing
 * a reader of its output waits on. 0, or -errno when it could not fork. */
int vs_spawn_detached(void (*fn)(void *arg), void *arg, int keep);

/* One byte over the unix socket sock, with fd as SCM_RIGHTS (fd < 0: the
 * byte alone); flags as for sendmsg (MSG_NOSIGNAL...). 0 or -errno. */
int vs_send_fd(int sock, int fd, int flags);
/* Its other side: one byte, and the fd it carried (close-on-exec) or -1
 * (none, or nothing to read: flags as for recvmsg, MSG_DONTWAIT...). */
int vs_recv_fd(int sock, int flags);

/* A library's functions by name, for the *_dl.c shims that dlopen a library
 * on first use: every slot set, or false (dlerror()'s or the missing
 * symbol's name in why, when not NULL) and the handle closed. */
struct vs_dlsym {
	const char *name;
	void **slot;
};
bool vs_dl_resolve(const char *lib, const struct vs_dlsym *syms, size_t n, char *why,
		   size_t why_len);

/*
 * rm -rf that never follows symlinks and never crosses into another mount
 * (a mount point below path is an error, not a descent). Missing path is fine.
 */
int vs_rm_rf(const char *path, struct vs_error *err);

/* Write all of buf to fd, retrying on EINTR/short writes. Returns 0 or -errno. */
int vs_write_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes unless EOF. Returns bytes read or -errno. */
ssize_t vs_read_all(int fd, void *buf, size_t len);

/* Monotonic clock in nanoseconds. */
uint64_t vs_now_ns(void);

/* Free a NULL-terminated string vector and its strings (NULL is fine). */
void vs_strv_free(char **v);
static inline void vs_strv_freep(char ***v)
{
	vs_strv_free(*v);
}
#define cleanup_strv __attribute__((cleanup(vs_strv_freep)))

#define VS_SHA256_HEX 65 /* 64 hex digits + NUL */
/* SHA-256 of fd's whole content (pread from offset 0), as lowercase hex. */
int vs_sha256_fd(int fd, char out[VS_SHA256_HEX]);
/* SHA-256 of a buffer, as lowercase hex. */
void vs_sha256_buf(const void *buf, size_t len, char out[VS_SHA256_HEX]);
/* Is s a sha256 as these write it: 64 lowercase hex digits? */
bool vs_sha256_hex_valid(const char *s);

/* Open directory rel below dfd, creating missing components (mode), one at
 * a time, never following a symlink. Returns the new fd or -errno. */
int vs_mkdirs_at(int dfd, const char *rel, mode_t mode, struct vs_error *err);

#endif

/*
 * files.c - file descriptors: what is refused, how each supported kind is
 * dumped, and how the root stub recreates the open file descriptions.
 *
 * Identity: an open file description is one struct file; fds that share
 * one (dup, fork) are detected with kcmp(KCMP_FILE) and restored as one
 * pool entry dup'ed into every place. Pipes and sockets pair by inode; unix
 * socket peers come from NETLINK_SOCK_DIAG, queried from a socket created
 * inside the tree's network namespace. Buffered bytes are read without
 * consuming them: tee(2) for pipes, MSG_PEEK + SO_PEEK_OFF for sockets.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include "files.h"
#include "vslice/util.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

void ck_files_init(struct ck_files *f)
{
	memset(f, 0, sizeof(*f));
	f->next_id = 1;
}

void ck_files_free(struct ck_files *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->obj[i].dup >= 0)
			close(f->obj[i].dup);
	free(f->obj);
	free(f->shm);
	free(f->ux);
	free(f->pipes);
	memset(f, 0, sizeof(*f));
}

static int getfd(pid_t hpid, int fd)
{
	int pfd = (int)syscall(SYS_pidfd_open, hpid, 0);
	if (pfd < 0)
		return -errno;
	int r = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	int e = errno;
	close(pfd);
	return r < 0 ? -e : r;
}

static bool dev_allowed(dev_t rdev, const char **name)
{
	static const struct {
		unsigned maj, min;
		const char *path;
	} ok[] = {
	    {1, 3, "/dev/null"},   {1, 5, "/dev/zero"},	   {1, 7, "/dev/full"},
	    {1, 8, "/dev/random"}, {1, 9, "/dev/urandom"}, {5, 0, "/dev/tty"},
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(ok); i++)
		if (major(rdev) == ok[i].maj && minor(rdev) == ok[i].min) {
			if (name)
				*name = ok[i].path;
			return true;
		}
	return false;
}

/* What kind of fd this is, or a refusal reason. */
static int classify(pid_t hpid, pid_t vpid, int fd, const char *link, const struct stat *st,
		    uint32_t *kind, struct vs_error *err)
{
	if (strncmp(link, "anon_inode:", 11) == 0) {
		const char *k = link + 11;
		if (strcmp(k, "[eventfd]") == 0)
			*kind = CK_F_EVENTFD;
		else if (strcmp(k, "[eventpoll]") == 0)
			*kind = CK_F_EPOLL;
		else if (strcmp(k, "[timerfd]") == 0)
			*kind = CK_F_TIMERFD;
		else if (strcmp(k, "[signalfd]") == 0)
			*kind = CK_F_SIGNALFD;
		else {
			const char *why = strstr(k, "inotify")	   ? "inotify"
					  : strstr(k, "fanotify")  ? "fanotify"
					  : strstr(k, "io_uring")  ? "io_uring"
					  : strstr(k, "userfault") ? "userfaultfd"
					  : strstr(k, "perf")	   ? "perf events"
					  : strstr(k, "bpf")	   ? "BPF objects"
					  : strstr(k, "pidfd")	   ? "pidfds"
								   : "this kernel object";
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: %s (%s) not supported", vpid,
					    fd, link, why);
		}
		return 0;
	}
	if (strcmp(link, "inotify") == 0 || strncmp(link, "anon_inode:inotify", 18) == 0)
		return vs_error_set(err, ENOTSUP, "pid %d fd %d: refused: inotify not supported",
				    vpid, fd);
	if (strncmp(link, "pipe:", 5) == 0) {
		*kind = CK_F_PIPE;
		return 0;
	}
	if (strncmp(link, "socket:", 7) == 0) {
		int d = getfd(hpid, fd);
		if (d < 0)
			return vs_error_sys(err, -d, "pid %d fd %d: pidfd_getfd", vpid, fd);
		int dom = -1, type = -1;
		socklen_t l = sizeof(dom);
		getsockopt(d, SOL_SOCKET, SO_DOMAIN, &dom, &l);
		l = sizeof(type);
		getsockopt(d, SOL_SOCKET, SO_TYPE, &type, &l);
		close(d);
		if (dom == AF_UNIX) {
			*kind = CK_F_UNIX;
			return 0;
		}
		if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: TCP sockets are not migrated "
					    "(the slice's address does not move)",
					    vpid, fd);
		return vs_error_set(err, ENOTSUP,
				    "pid %d fd %d: refused: socket family %d type %d not supported",
				    vpid, fd, dom, type);
	}
	if (S_ISREG(st->st_mode)) {
		*kind = CK_F_REG;
		return 0;
	}
	if (S_ISDIR(st->st_mode)) {
		*kind = CK_F_DIR;
		return 0;
	}
	if (S_ISFIFO(st->st_mode)) {
		*kind = CK_F_FIFO;
		return 0;
	}
	if (S_ISCHR(st->st_mode) && dev_allowed(st->st_rdev, NULL)) {
		*kind = CK_F_CHR;
		return 0;
	}
	return vs_error_set(err, ENOTSUP, "pid %d fd %d: refused: %s (device %u:%u) not supported",
			    vpid, fd, link, major(st->st_rdev), minor(st->st_rdev));
}

int ck_files_check(pid_t hpid, pid_t vpid, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", hpid);
	cleanup_closedir DIR *dir = opendir(path);
	if (!dir)
		return vs_error_sys(err, errno, "pid %d: list fds", vpid);
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		char p2[96], link[4096];
		snprintf(p2, sizeof(p2), "/proc/%d/fd/%d", hpid, fd);
		ssize_t l = readlink(p2, link, sizeof(link) - 1);
		if (l < 0)
			continue;
		link[l] = 0;
		struct stat st;
		if (stat(p2, &st) < 0)
			memset(&st, 0, sizeof(st));
		uint32_t kind;
		int r = classify(hpid, vpid, fd, link, &st, &kind, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Run fn in a child that joined the tree's net and ipc namespaces; it can
 * hand back one fd (SCM_RIGHTS) and an exit code. */
static int ns_child(pid_t hpid, int (*fn)(int sock), int *fd_out, int *code)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t c = fork();
	if (c < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	if (c == 0) {
		close(sv[0]);
		char p[64];
		snprintf(p, sizeof(p), "/proc/%d/ns/net", hpid);
		int nfd = open(p, O_RDONLY | O_CLOEXEC);
		snprintf(p, sizeof(p), "/proc/%d/ns/ipc", hpid);
		int ifd = open(p, O_RDONLY | O_CLOEXEC);
		if (nfd < 0 || ifd < 0 || setns(nfd, CLONE_NEWNET) < 0 ||
		    setns(ifd, CLONE_NEWIPC) < 0)
			_exit(100);
		_exit(fn(sv[1]));
	}
	close(sv[1]);
	if (fd_out) {
		char cbuf[CMSG_SPACE(sizeof(int))];
		char b;
		struct iovec iov = {&b, 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		*fd_out = -1;
		if (recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC) > 0) {
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			if (cm && cm->cmsg_type == SCM_RIGHTS)
				memcpy(fd_out, CMSG_DATA(cm), sizeof(int));
		}
	}
	close(sv[0]);
	int status;
	while (waitpid(c, &status, 0) < 0 && errno == EINTR)
		;
	*code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
	return 0;
}

static int count_lines(const char *path)
{
	char buf[8192];
	int n = ck_read_small(path, buf, sizeof(buf));
	if (n < 0)
		return 0;
	int lines = 0;
	for (int i = 0; i < n; i++)
		lines += buf[i] == '\n';
	return lines;
}

static int sysvipc_probe(int sock)
{
	/* /proc/sysvipc shows the reader's ipc namespace. */
	int shm = count_lines("/proc/sysvipc/shm") - 1;
	int msg = count_lines("/proc/sysvipc/msg") - 1;
	int sem = count_lines("/proc/sysvipc/sem") - 1;
	return (shm > 0 ? 1 : 0) | (msg > 0 ? 2 : 0) | (sem > 0 ? 4 : 0);
}

int ck_files_check_ns(pid_t hpid, struct vs_error *err)
{
	int code;
	int r = ns_child(hpid, sysvipc_probe, NULL, &code);
	if (r < 0)
		return vs_error_sys(err, -r, "pid %d: probe ipc namespace", hpid);
	if (code == 100)
		return vs_error_set(err, EPERM, "pid %d: cannot join its namespaces", hpid);
	if (code)
		return vs_error_set(
		    err, ENOTSUP,
		    "refused: SysV IPC objects exist in the tree's ipc namespace (%s%s%s)",
		    code & 1 ? "shm " : "", code & 2 ? "msg " : "", code & 4 ? "sem" : "");
	return 0;
}

static int diag_sock(int sock)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return 1;
	char cbuf[CMSG_SPACE(sizeof(int))];
	char b = 0;
	struct iovec iov = {&b, 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == 1 ? 0 : 1;
}

static int load_unix_diag(struct ck_files *f, pid_t hpid, struct vs_error *err)
{
	if (f->ux_loaded)
		return 0;
	int nl = -1, code;
	int r = ns_child(hpid, diag_sock, &nl, &code);
	if (r < 0 || nl < 0)
		return vs_error_sys(err, r < 0 ? -r : EPERM,
				    "pid %d: sock_diag socket in its netns", hpid);
	cleanup_close int fd = nl;
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} q = {.nlh = {.nlmsg_len = sizeof(q),
		       .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
	       .req = {.sdiag_family = AF_UNIX,
		       .udiag_states = 0xffffffff,
		       .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN}};
	if (send(fd, &q, sizeof(q), 0) < 0)
		return vs_error_sys(err, errno, "sock_diag request");
	static char buf[65536];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return vs_error_sys(err, errno, "sock_diag recv");
		if (n == 0)
			break;
		bool done = false;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR)
				return vs_error_set(err, EIO, "sock_diag: error reply");
			struct unix_diag_msg *m = NLMSG_DATA(h);
			struct ck_ux u = {
			    .ino = m->udiag_ino, .type = m->udiag_type, .state = m->udiag_state};
			int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
			for (struct rtattr *a = (void *)(m + 1); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen)) {
				if (a->rta_type == UNIX_DIAG_NAME) {
					size_t pl = RTA_PAYLOAD(a);
					u.name_len =
					    (uint32_t)(pl < sizeof(u.name) ? pl : sizeof(u.name));
					memcpy(u.name, RTA_DATA(a), u.name_len);
				} else if (a->rta_type == UNIX_DIAG_PEER) {
					uint32_t pi;
					memcpy(&pi, RTA_DATA(a), 4);
					u.peer = pi;
				} else if (a->rta_type == UNIX_DIAG_RQLEN) {
					struct unix_diag_rqlen rq;
					memcpy(&rq, RTA_DATA(a), sizeof(rq));
					u.rqlen = rq.udiag_rqueue;
					u.wqlen = rq.udiag_wqueue;
				} else if (a->rta_type == UNIX_DIAG_SHUTDOWN) {
					u.shutdown = *(uint8_t *)RTA_DATA(a);
				}
			}
			f->ux = ck_xrealloc(f->ux, (f->ux_n + 1) * sizeof(*f->ux));
			f->ux[f->ux_n++] = u;
		}
		if (done)
			break;
	}
	f->ux_loaded = true;
	return 0;
}

static struct ck_ux *find_ux(struct ck_files *f, uint64_t ino)
{
	for (size_t i = 0; i < f->ux_n; i++)
		if (f->ux[i].ino == ino)
			return &f->ux[i];
	return NULL;
}

/* Is mount id mnt in pid's mount namespace? */
static bool mnt_visible(pid_t hpid, int mnt)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/mountinfo", hpid);
	cleanup_fclose FILE *f = fopen(p, "re");
	char line[4096];
	while (f && fgets(line, sizeof(line), f))
		if (atoi(line) == mnt)
			return true;
	return false;
}

/* fdinfo as text */
static int read_fdinfo(pid_t hpid, int fd, char *buf, size_t len)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/fdinfo/%d", hpid, fd);
	return ck_read_small(p, buf, len);
}

static const char *fdinfo_val(const char *buf, const char *key)
{
	const char *l = buf;
	size_t kl = strlen(key);
	while (l && *l) {
		if (strncmp(l, key, kl) == 0)
			return l + kl;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return NULL;
}

static int put_data(struct ck_writer *w, uint32_t kind, uint64_t id, uint64_t off, const void *p,
		    size_t len, struct vs_error *err)
{
	struct ck_data dh = {.kind = kind, .id = id, .off = off, .len = len};
	return ck_write_section(w, CK_SEC_DATA, &dh, sizeof(dh), p, len, err);
}

/* Bytes buffered in a pipe, without consuming them. */
static int dump_pipe_data(struct ck_writer *w, int dup, uint32_t id, uint32_t *size_out,
			  struct vs_error *err)
{
	int size = fcntl(dup, F_GETPIPE_SZ);
	if (size < 0)
		return vs_error_sys(err, errno, "pipe: F_GETPIPE_SZ");
	*size_out = (uint32_t)size;
	int avail = 0;
	if (ioctl(dup, FIONREAD, &avail) < 0 || avail == 0)
		return 0;
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", dup);
	cleanup_close int rd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rd < 0)
		return vs_error_sys(err, errno, "pipe: reopen for reading");
	int tp[2];
	if (pipe2(tp, O_CLOEXEC | O_NONBLOCK) < 0)
		return vs_error_sys(err, errno, "pipe");
	fcntl(tp[1], F_SETPIPE_SZ, size);
	ssize_t n = tee(rd, tp[1], (size_t)avail, SPLICE_F_NONBLOCK);
	int r = 0;
	if (n < 0) {
		r = vs_error_sys(err, errno, "pipe: tee");
	} else {
		char *buf = vs_xmalloc((size_t)n + 1);
		ssize_t got = vs_read_all(tp[0], buf, (size_t)n);
		if (got != n)
			r = vs_error_set(err, EIO, "pipe: short read of teed data");
		else
			r = put_data(w, CK_D_PIPE, id, 0, buf, (size_t)n, err);
		free(buf);
	}
	close(tp[0]);
	close(tp[1]);
	return r;
}

/* Bytes queued to a unix socket, peeked. */
static int dump_sk_queue(struct ck_writer *w, int dup, uint32_t id, uint32_t type,
			 struct vs_error *err)
{
	int avail = 0;
	if (ioctl(dup, FIONREAD, &avail) < 0 || avail <= 0)
		return 0;
	int off = 0;
	if (setsockopt(dup, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
		return vs_error_sys(err, errno, "unix socket: SO_PEEK_OFF");
	int r = 0;
	char *buf = vs_xmalloc(1 << 20);
	if (type == SOCK_STREAM) {
		uint64_t pos = 0;
		for (;;) {
			ssize_t n = recv(dup, buf, 1 << 20, MSG_PEEK | MSG_DONTWAIT);
			if (n <= 0)
				break;
			r = put_data(w, CK_D_SKQUEUE, id, pos, buf, (size_t)n, err);
			if (r < 0)
				break;
			pos += n;
		}
	} else {
		for (int i = 0; i < 100000; i++) {
			ssize_t n = recv(dup, buf, 1 << 20, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
			if (n < 0)
				break;
			if (n > (1 << 20)) {
				r = vs_error_set(err, EMSGSIZE, "unix socket: datagram too large");
				break;
			}
			r = put_data(w, CK_D_SKDGRAM, id, (uint64_t)i, buf, (size_t)n, err);
			if (r < 0)
				break;
		}
	}
	free(buf);
	off = -1;
	setsockopt(dup, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
	return r;
}

static int dump_file(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		     int dup, uint32_t kind, const char *link, const struct stat *st,
		     const char *info, struct ck_file *cf, struct vs_error *err)
{
	cf->kind = kind;
	cf->mode = st->st_mode;
	cf->ino = st->st_ino;
	cf->rdev = st->st_rdev;
	cf->size = st->st_size;
	const char *v;
	if ((v = fdinfo_val(info, "pos:")))
		cf->pos = strtoull(v, NULL, 10);
	if ((v = fdinfo_val(info, "flags:")))
		cf->flags = (uint32_t)strtoul(v, NULL, 8) & ~(uint32_t)O_CLOEXEC;
	int r = 0;
	switch (kind) {
	case CK_F_REG:
	case CK_F_DIR:
	case CK_F_FIFO: {
		if ((v = fdinfo_val(info, "mnt_id:")) && !mnt_visible(hpid, atoi(v))) {
			/* Opened from outside (the runtime's log file): only as
			 * stdio, which the restorer supplies again. */
			if (fd > 2)
				return vs_error_set(
				    err, ENOTSUP,
				    "pid %d fd %d: refused: %s is outside the tree's file system",
				    vpid, fd, link);
			cf->external = 1;
			cf->ext_fd = fd;
			ck_copy(cf->path, sizeof(cf->path), link);
			break;
		}
		if (!ck_copy(cf->path, sizeof(cf->path), link))
			return vs_error_set(err, ENAMETOOLONG,
					    "pid %d fd %d: refused: path too long", vpid, fd);
		char *del = strstr(cf->path, " (deleted)");
		if (kind == CK_F_REG && (st->st_nlink == 0 || del)) {
			if (del)
				*del = 0;
			cf->ghost = 1;
			char p[64];
			snprintf(p, sizeof(p), "/proc/self/fd/%d", dup);
			cleanup_close int rd = open(p, O_RDONLY | O_CLOEXEC);
			if (rd < 0)
				return vs_error_sys(err, errno,
						    "pid %d fd %d: reopen unlinked file", vpid, fd);
			char *buf = vs_xmalloc(1 << 20);
			for (off_t o = 0; o < st->st_size && r >= 0;) {
				ssize_t n = pread(rd, buf, 1 << 20, o);
				if (n <= 0)
					break;
				r = put_data(w, CK_D_GHOST, cf->id, (uint64_t)o, buf, (size_t)n,
					     err);
				o += n;
			}
			free(buf);
		} else if (kind == CK_F_FIFO) {
			bool seen = false;
			for (size_t i = 0; i < f->pipes_n; i++)
				seen |= f->pipes[i] == cf->ino;
			if (!seen) {
				f->pipes = ck_xrealloc(f->pipes, (f->pipes_n + 1) * 8);
				f->pipes[f->pipes_n++] = cf->ino;
				r = dump_pipe_data(w, dup, cf->id, &cf->pipe_size, err);
			}
		}
		break;
	}
	case CK_F_CHR: {
		const char *name = NULL;
		dev_allowed(st->st_rdev, &name);
		snprintf(cf->path, sizeof(cf->path), "%s", name);
		break;
	}
	case CK_F_PIPE: {
		bool seen = false;
		for (size_t i = 0; i < f->pipes_n; i++)
			seen |= f->pipes[i] == cf->ino;
		if (!seen) {
			f->pipes = ck_xrealloc(f->pipes, (f->pipes_n + 1) * 8);
			f->pipes[f->pipes_n++] = cf->ino;
			r = dump_pipe_data(w, dup, cf->id, &cf->pipe_size, err);
		} else {
			cf->pipe_size = (uint32_t)fcntl(dup, F_GETPIPE_SZ);
		}
		break;
	}
	case CK_F_UNIX: {
		r = load_unix_diag(f, hpid, err);
		if (r < 0)
			return r;
		struct ck_ux *u = find_ux(f, cf->ino);
		if (!u)
			return vs_error_set(err, ENOENT,
					    "pid %d fd %d: unix socket %" PRIu64
					    " not found by sock_diag",
					    vpid, fd, cf->ino);
		cf->sk_type = u->type;
		cf->sk_state = u->state;
		cf->peer_ino = u->peer;
		cf->sk_shutdown = u->shutdown;
		cf->sk_name_len = u->name_len;
		memcpy(cf->sk_name, u->name, u->name_len);
		if (u->state == 10 /* TCP_LISTEN */) {
			cf->sk_backlog = u->wqlen;
			if (u->rqlen)
				return vs_error_set(
				    err, ENOTSUP,
				    "pid %d fd %d: refused: listening unix socket with %u "
				    "unaccepted connections",
				    vpid, fd, u->rqlen);
		}
		r = dump_sk_queue(w, dup, cf->id, cf->sk_type, err);
		break;
	}
	case CK_F_EVENTFD:
		if ((v = fdinfo_val(info, "eventfd-count:")))
			cf->u[0] = strtoull(v, NULL, 16);
		if ((v = fdinfo_val(info, "eventfd-semaphore:")))
			cf->u[1] = strtoull(v, NULL, 10);
		break;
	case CK_F_SIGNALFD:
		if ((v = fdinfo_val(info, "sigmask:")))
			cf->u[0] = strtoull(v, NULL, 16);
		break;
	case CK_F_TIMERFD:
		if ((v = fdinfo_val(info, "clockid:")))
			cf->u[0] = strtoull(v, NULL, 10);
		if ((v = fdinfo_val(info, "ticks:")))
			cf->u[1] = strtoull(v, NULL, 10);
		if ((v = fdinfo_val(info, "settime flags:")))
			cf->u[2] = strtoull(v, NULL, 8);
		if ((v = fdinfo_val(info, "it_value:")))
			sscanf(v, " (%" SCNd64 ", %" SCNd64 ")", &cf->tv[0], &cf->tv[1]);
		if ((v = fdinfo_val(info, "it_interval:")))
			sscanf(v, " (%" SCNd64 ", %" SCNd64 ")", &cf->tv[2], &cf->tv[3]);
		break;
	case CK_F_EPOLL: {
		cf->owner_pid = vpid;
		for (const char *l = info; l && *l;
		     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
			if (strncmp(l, "tfd:", 4) != 0)
				continue;
			int tfd;
			unsigned ev;
			unsigned long long data;
			if (sscanf(l, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) != 3)
				continue;
			struct ck_epoll e = {
			    .file_id = cf->id, .tfd = tfd, .events = ev, .data = data};
			r = ck_write_section(w, CK_SEC_EPOLL, &e, sizeof(e), NULL, 0, err);
			if (r < 0)
				return r;
		}
		break;
	}
	}
	return r;
}

int ck_files_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid,
		  struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", hpid);
	cleanup_closedir DIR *dir = opendir(path);
	if (!dir)
		return vs_error_sys(err, errno, "pid %d: list fds", vpid);
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		char p2[96], link[4096], info[16384];
		snprintf(p2, sizeof(p2), "/proc/%d/fd/%d", hpid, fd);
		ssize_t l = readlink(p2, link, sizeof(link) - 1);
		if (l < 0)
			return vs_error_sys(err, errno, "pid %d fd %d: readlink", vpid, fd);
		link[l] = 0;
		struct stat st;
		if (stat(p2, &st) < 0)
			memset(&st, 0, sizeof(st));
		uint32_t kind;
		int r = classify(hpid, vpid, fd, link, &st, &kind, err);
		if (r < 0)
			return r;
		if (read_fdinfo(hpid, fd, info, sizeof(info)) < 0)
			return vs_error_sys(err, errno, "pid %d fd %d: fdinfo", vpid, fd);
		const char *fl = fdinfo_val(info, "flags:");
		uint32_t cloexec = fl && (strtoul(fl, NULL, 8) & O_CLOEXEC) ? 1 : 0;
		/* Same open file description as one we already have? */
		uint32_t id = 0;
		for (size_t i = 0; i < f->n && !id; i++) {
			struct ck_fobj *o = &f->obj[i];
			if (o->dev != st.st_dev || o->ino != st.st_ino || o->kind != kind)
				continue;
			if (syscall(SYS_kcmp, o->hpid, hpid, KCMP_FILE, o->fd, fd) == 0)
				id = o->id;
		}
		if (!id) {
			int dup = getfd(hpid, fd);
			if (dup < 0)
				return vs_error_sys(err, -dup, "pid %d fd %d: pidfd_getfd", vpid,
						    fd);
			struct ck_fobj o = {.id = f->next_id++,
					    .kind = kind,
					    .hpid = hpid,
					    .fd = fd,
					    .dup = dup,
					    .dev = st.st_dev,
					    .ino = st.st_ino};
			f->obj = ck_xrealloc(f->obj, (f->n + 1) * sizeof(*f->obj));
			f->obj[f->n++] = o;
			struct ck_file *cf = vs_xcalloc(1, sizeof(*cf));
			cf->id = o.id;
			r = dump_file(f, w, hpid, vpid, fd, dup, kind, link, &st, info, cf, err);
			if (r >= 0)
				r = ck_write_section(w, CK_SEC_FILE, cf, sizeof(*cf), NULL, 0, err);
			free(cf);
			if (r < 0)
				return vs_error_wrap(err, "pid %d fd %d", vpid, fd);
			id = o.id;
		}
		struct ck_fd rec = {.pid = vpid, .fd = fd, .file_id = id, .cloexec = cloexec};
		r = ck_write_section(w, CK_SEC_FD, &rec, sizeof(rec), NULL, 0, err);
		if (r < 0)
			return r;
		f->nr_fds++;
	}
	return 0;
}

int ck_files_finish(struct ck_files *f, struct ck_writer *w, struct vs_error *err)
{
	/* Every unix socket's peer must be in the tree (we cannot reconnect to
	 * the outside world) - checked here, when all sockets are known. */
	for (size_t i = 0; i < f->n; i++) {
		if (f->obj[i].kind != CK_F_UNIX)
			continue;
		struct ck_ux *u = find_ux(f, f->obj[i].ino);
		if (!u || !u->peer || u->state == 10)
			continue;
		bool inside = false;
		for (size_t j = 0; j < f->n && !inside; j++)
			inside = f->obj[j].kind == CK_F_UNIX && f->obj[j].ino == u->peer;
		if (!inside && u->type != SOCK_DGRAM)
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d fd %d: refused: unix socket connected outside the tree",
			    f->obj[i].hpid, f->obj[i].fd);
	}
	return 0;
}

/* --- restore: the pool ------------------------------------------------- */

static const struct ck_file *file_by_ino(const struct ckpt_image *img, uint32_t kind, uint64_t ino,
					 size_t *idx)
{
	for (size_t i = 0; i < img->files.n; i++)
		if (img->files.v[i].kind == kind && img->files.v[i].ino == ino) {
			if (idx)
				*idx = i;
			return &img->files.v[i];
		}
	return NULL;
}

static int write_data(const struct ckpt_image *img, uint32_t kind, uint64_t id, int fd,
		      bool positional, struct vs_error *err)
{
	for (size_t i = 0; i < img->data.n; i++) {
		const struct ck_data_r *d = &img->data.v[i];
		if (d->h.kind != kind || d->h.id != id)
			continue;
		ssize_t n;
		if (positional)
			n = pwrite(fd, d->data, d->h.len, (off_t)d->h.off);
		else if (kind == CK_D_SKDGRAM || kind == CK_D_SKQUEUE)
			n = send(fd, d->data, d->h.len, MSG_NOSIGNAL);
		else
			n = write(fd, d->data, d->h.len);
		if (n != (ssize_t)d->h.len)
			return vs_error_sys(err, n < 0 ? errno : EIO,
					    "restore data kind %u of %" PRIu64, kind, id);
	}
	return 0;
}

static int to_pool(int fd, int base)
{
	int n = fcntl(fd, F_DUPFD, base);
	int e = errno;
	close(fd);
	errno = e;
	return n;
}

static int unix_addr(const struct ck_file *f, struct sockaddr_un *sa, socklen_t *len)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (f->sk_name_len == 0 || f->sk_name_len > sizeof(sa->sun_path))
		return -1;
	memcpy(sa->sun_path, f->sk_name, f->sk_name_len);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + f->sk_name_len);
	return 0;
}

int ck_pool_create(const struct ckpt_image *img, int base, struct ck_pool *pool,
		   struct vs_error *err)
{
	size_t nf = img->files.n;
	pool->base = base;
	pool->fd = vs_xmalloc((nf + 1) * sizeof(int));
	for (size_t i = 0; i < nf; i++)
		pool->fd[i] = -1;
	/* side fds: the other pipe end, a fifo's keep-alive reader/writer */
	int *side = vs_xmalloc((nf + 1) * sizeof(int));
	for (size_t i = 0; i < nf; i++)
		side[i] = -1;
	int r = 0;
	for (size_t i = 0; i < nf && r >= 0; i++) {
		const struct ck_file *f = &img->files.v[i];
		if (pool->fd[i] >= 0)
			continue;
		int fd = -1, acc = f->flags & O_ACCMODE;
		int fl = (int)(f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC));
		if (f->external) {
			fd = fcntl(f->ext_fd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0) {
				r = vs_error_sys(err, errno, "file %s: stdio fd %d of the restorer",
						 f->path, f->ext_fd);
				break;
			}
			pool->fd[i] = to_pool(fd, base);
			continue;
		}
		switch (f->kind) {
		case CK_F_REG:
			if (f->ghost) {
				char dir[CK_PATH];
				snprintf(dir, sizeof(dir), "%s", f->path);
				char *sl = strrchr(dir, '/');
				if (sl && sl != dir)
					*sl = 0;
				else
					snprintf(dir, sizeof(dir), "/");
				int t = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, f->mode & 07777);
				if (t < 0)
					t = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC,
						 f->mode & 07777);
				if (t < 0) {
					r = vs_error_sys(err, errno, "unlinked file %s: O_TMPFILE",
							 f->path);
					break;
				}
				if ((r = write_data(img, CK_D_GHOST, f->id, t, true, err)) < 0 ||
				    ftruncate(t, (off_t)f->size) < 0) {
					close(t);
					if (r >= 0)
						r = vs_error_sys(err, errno, "unlinked file %s",
								 f->path);
					break;
				}
				char p[64];
				snprintf(p, sizeof(p), "/proc/self/fd/%d", t);
				fd = open(p, fl);
				close(t);
			} else {
				fd = open(f->path, fl);
			}
			if (fd >= 0)
				lseek(fd, (off_t)f->pos, SEEK_SET);
			break;
		case CK_F_DIR:
			fd = open(f->path, O_RDONLY | O_DIRECTORY);
			if (fd >= 0)
				lseek(fd, (off_t)f->pos, SEEK_SET);
			break;
		case CK_F_CHR:
			fd = open(f->path, fl);
			break;
		case CK_F_PIPE: {
			size_t j;
			int p[2];
			if (pipe2(p, 0) < 0) {
				r = vs_error_sys(err, errno, "pipe");
				break;
			}
			if (f->pipe_size)
				fcntl(p[1], F_SETPIPE_SZ, (int)f->pipe_size);
			/* the data record belongs to whichever end was dumped first */
			for (size_t k = 0; k < nf; k++) {
				const struct ck_file *o = &img->files.v[k];
				if (o->kind == CK_F_PIPE && o->ino == f->ino &&
				    (r = write_data(img, CK_D_PIPE, o->id, p[1], false, err)) < 0)
					break;
			}
			/* other file records of the same pipe (the other end, or a reopen) */
			for (j = i + 1; j < nf; j++) {
				const struct ck_file *o = &img->files.v[j];
				if (o->kind != CK_F_PIPE || o->ino != f->ino)
					continue;
				int want = (o->flags & O_ACCMODE) == O_RDONLY ? p[0] : p[1];
				pool->fd[j] = to_pool(dup(want), base);
				if (o->flags & O_NONBLOCK)
					fcntl(pool->fd[j], F_SETFL, O_NONBLOCK);
			}
			fd = acc == O_RDONLY ? p[0] : p[1];
			side[i] = acc == O_RDONLY ? p[1] : p[0];
			side[i] = to_pool(side[i], base);
			break;
		}
		case CK_F_FIFO: {
			size_t j;
			int keep = -1;
			for (j = 0; j < i; j++)
				if (img->files.v[j].kind == CK_F_FIFO &&
				    img->files.v[j].ino == f->ino && side[j] >= 0)
					keep = side[j];
			if (keep < 0) {
				keep = open(f->path, O_RDWR | O_NONBLOCK);
				if (keep < 0) {
					r = vs_error_sys(err, errno, "fifo %s", f->path);
					break;
				}
				keep = to_pool(keep, base);
				for (size_t k = 0; k < nf; k++) {
					const struct ck_file *o = &img->files.v[k];
					if (o->kind == CK_F_FIFO && o->ino == f->ino &&
					    (r = write_data(img, CK_D_PIPE, o->id, keep, false,
							    err)) < 0)
						break;
				}
				side[i] = keep;
			}
			fd = open(f->path, acc | O_NONBLOCK);
			if (fd >= 0)
				fcntl(fd, F_SETFL, fl & ~O_ACCMODE);
			break;
		}
		case CK_F_UNIX: {
			size_t j;
			const struct ck_file *peer =
			    f->peer_ino ? file_by_ino(img, CK_F_UNIX, f->peer_ino, &j) : NULL;
			int type = (int)f->sk_type;
			if (peer && peer->peer_ino == f->ino) {
				int sv[2];
				if (socketpair(AF_UNIX, type, 0, sv) < 0) {
					r = vs_error_sys(err, errno, "socketpair");
					break;
				}
				/* queued to f = sent by its peer, and vice versa */
				if ((r = write_data(
					 img, type == SOCK_STREAM ? CK_D_SKQUEUE : CK_D_SKDGRAM,
					 f->id, sv[1], false, err)) < 0 ||
				    (r = write_data(
					 img, type == SOCK_STREAM ? CK_D_SKQUEUE : CK_D_SKDGRAM,
					 peer->id, sv[0], false, err)) < 0)
					break;
				fd = sv[0];
				pool->fd[j] = to_pool(sv[1], base);
				if (peer->flags & O_NONBLOCK)
					fcntl(pool->fd[j], F_SETFL, O_NONBLOCK);
			} else {
				fd = socket(AF_UNIX, type, 0);
				if (fd < 0) {
					r = vs_error_sys(err, errno, "socket");
					break;
				}
				struct sockaddr_un sa;
				socklen_t sl;
				if (unix_addr(f, &sa, &sl) == 0) {
					struct stat st;
					if (sa.sun_path[0] && lstat(sa.sun_path, &st) == 0 &&
					    S_ISSOCK(st.st_mode))
						unlink(sa.sun_path);
					if (bind(fd, (struct sockaddr *)&sa, sl) < 0) {
						r = vs_error_sys(err, errno, "unix socket: bind %s",
								 sa.sun_path[0] ? sa.sun_path
										: "@abstract");
						break;
					}
				}
				if (f->sk_state == 10 &&
				    listen(fd, f->sk_backlog ? (int)f->sk_backlog : 128) < 0) {
					r = vs_error_sys(err, errno, "unix socket: listen");
					break;
				}
				if (peer && type == SOCK_DGRAM) {
					/* connected dgram to a bound peer: connected below */
				}
			}
			if (f->sk_shutdown & 1)
				shutdown(fd, SHUT_RD);
			if (f->sk_shutdown & 2)
				shutdown(fd, SHUT_WR);
			break;
		}
		case CK_F_EVENTFD:
			fd = eventfd((unsigned)f->u[0], f->u[1] ? EFD_SEMAPHORE : 0);
			break;
		case CK_F_EPOLL:
			fd = epoll_create1(0);
			break;
		case CK_F_TIMERFD: {
			fd = timerfd_create((int)f->u[0], 0);
			if (fd < 0)
				break;
			struct itimerspec its = {{f->tv[2], f->tv[3]}, {f->tv[0], f->tv[1]}};
			if ((its.it_value.tv_sec || its.it_value.tv_nsec) &&
			    timerfd_settime(fd, 0, &its, NULL) < 0) {
				r = vs_error_sys(err, errno, "timerfd_settime");
				break;
			}
			if (f->u[1])
				ioctl(fd, TFD_IOC_SET_TICKS, &f->u[1]);
			break;
		}
		case CK_F_SIGNALFD: {
			sigset_t m;
			sigemptyset(&m);
			for (int s = 1; s <= 64; s++)
				if (f->u[0] & (1ull << (s - 1)))
					sigaddset(&m, s);
			fd = signalfd(-1, &m, 0);
			break;
		}
		}
		if (r < 0)
			break;
		if (fd < 0) {
			r = vs_error_sys(err, errno, "restore file %u (%s)", f->id,
					 f->path[0] ? f->path : "anonymous");
			break;
		}
		if (f->kind != CK_F_REG && f->kind != CK_F_DIR && f->kind != CK_F_FIFO)
			fcntl(fd, F_SETFL, fl & (O_NONBLOCK | O_APPEND | O_ASYNC));
		pool->fd[i] = to_pool(fd, base);
		if (pool->fd[i] < 0)
			r = vs_error_sys(err, errno, "file %u: move above fd %d", f->id, base);
	}
	/* connected dgram sockets whose peer is a bound socket in the tree */
	for (size_t i = 0; i < nf && r >= 0; i++) {
		const struct ck_file *f = &img->files.v[i];
		size_t j;
		if (f->kind != CK_F_UNIX || !f->peer_ino || f->sk_type == SOCK_STREAM)
			continue;
		const struct ck_file *peer = file_by_ino(img, CK_F_UNIX, f->peer_ino, &j);
		if (!peer || peer->peer_ino == f->ino)
			continue;
		struct sockaddr_un sa;
		socklen_t sl;
		if (unix_addr(peer, &sa, &sl) == 0 &&
		    connect(pool->fd[i], (struct sockaddr *)&sa, sl) < 0)
			r = vs_error_sys(err, errno, "unix dgram socket: connect");
	}
	/* datagrams queued to bound, unpaired sockets: send them again by name */
	for (size_t i = 0; i < nf && r >= 0; i++) {
		const struct ck_file *f = &img->files.v[i];
		const struct ck_file *peer =
		    f->peer_ino ? file_by_ino(img, CK_F_UNIX, f->peer_ino, NULL) : NULL;
		if (f->kind != CK_F_UNIX || f->sk_type == SOCK_STREAM ||
		    (peer && peer->peer_ino == f->ino))
			continue;
		struct sockaddr_un sa;
		socklen_t sl;
		if (unix_addr(f, &sa, &sl) < 0)
			continue;
		int s = socket(AF_UNIX, (int)f->sk_type, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&sa, sl) < 0)
			r = vs_error_sys(err, errno, "requeue datagrams");
		else
			r = write_data(img, CK_D_SKDGRAM, f->id, s, false, err);
		if (s >= 0)
			close(s);
	}
	/* shared memory objects */
	for (size_t i = 0; i < img->data.n && r >= 0; i++) {
		const struct ck_data_r *d = &img->data.v[i];
		if (d->h.kind != CK_D_SHM || ck_pool_shm_fd(pool, d->h.id) >= 0)
			continue;
		int m = memfd_create("vslice-shm", 0);
		if (m < 0) {
			r = vs_error_sys(err, errno, "memfd_create");
			break;
		}
		uint64_t size = 0;
		for (size_t k = 0; k < img->data.n; k++)
			if (img->data.v[k].h.kind == CK_D_SHM && img->data.v[k].h.id == d->h.id &&
			    img->data.v[k].h.off + img->data.v[k].h.len > size)
				size = img->data.v[k].h.off + img->data.v[k].h.len;
		if (ftruncate(m, (off_t)size) < 0 ||
		    (r = write_data(img, CK_D_SHM, d->h.id, m, true, err)) < 0) {
			if (r >= 0)
				r = vs_error_sys(err, errno, "shared memory: ftruncate");
			close(m);
			break;
		}
		pool->shm_id = ck_xrealloc(pool->shm_id, (pool->shm_n + 1) * 8);
		pool->shm_fd = ck_xrealloc(pool->shm_fd, (pool->shm_n + 1) * sizeof(int));
		pool->shm_id[pool->shm_n] = d->h.id;
		pool->shm_fd[pool->shm_n++] = to_pool(m, base);
	}
	for (size_t i = 0; i < nf; i++)
		if (side[i] >= 0 && img->files.v[i].kind == CK_F_PIPE)
			close(side[i]);
	/* fifo keep-alive fds stay until every stub installed its fds: they
	 * sit in the pool range and are closed with it. */
	free(side);
	return r;
}

int ck_pool_shm_fd(const struct ck_pool *pool, uint64_t id)
{
	for (size_t i = 0; i < pool->shm_n; i++)
		if (pool->shm_id[i] == id)
			return pool->shm_fd[i];
	return -1;
}

int ck_pool_install(const struct ckpt_image *img, const struct ck_pool *pool, pid_t pid,
		    struct vs_error *err)
{
	/* Close whatever the stub inherited below the pool that is not ours. */
	for (int fd = 0; fd < pool->base; fd++) {
		bool keep = false;
		for (size_t i = 0; i < img->fds.n && !keep; i++)
			keep = img->fds.v[i].pid == pid && img->fds.v[i].fd == fd;
		if (!keep)
			close(fd);
	}
	for (size_t i = 0; i < img->fds.n; i++) {
		const struct ck_fd *f = &img->fds.v[i];
		if (f->pid != pid)
			continue;
		size_t idx = 0;
		while (idx < img->files.n && img->files.v[idx].id != f->file_id)
			idx++;
		if (dup3(pool->fd[idx], f->fd, f->cloexec ? O_CLOEXEC : 0) < 0)
			return vs_error_sys(err, errno, "pid %d: install fd %d", pid, f->fd);
	}
	/* epoll targets, re-added by the process that owned the epoll */
	for (size_t i = 0; i < img->epolls.n; i++) {
		const struct ck_epoll *e = &img->epolls.v[i];
		int epfd = -1;
		for (size_t k = 0; k < img->fds.n && epfd < 0; k++)
			if (img->fds.v[k].pid == pid && img->fds.v[k].file_id == e->file_id)
				epfd = img->fds.v[k].fd;
		const struct ck_file *ef = NULL;
		for (size_t k = 0; k < img->files.n; k++)
			if (img->files.v[k].id == e->file_id)
				ef = &img->files.v[k];
		if (epfd < 0 || !ef || ef->owner_pid != pid)
			continue;
		struct epoll_event ev = {.events = e->events, .data.u64 = e->data};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->tfd, &ev) < 0)
			return vs_error_sys(err, errno, "pid %d: epoll fd %d: add target fd %d",
					    pid, epfd, e->tfd);
	}
	return 0;
}

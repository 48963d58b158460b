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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <linux/openat2.h>
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
	free(f->locks);
	free(f->ghosts);
	free(f->ept); /* epdup is an obj's dup, closed above */
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
		else if (strcmp(k, "inotify") == 0)
			*kind = CK_F_INOTIFY;
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
		if (dom == AF_INET || dom == AF_INET6) {
			*kind = CK_F_INET; /* dump_inet says which ones */
			return 0;
		}
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

/* Exit code: 1 if a SysV shared memory segment of the reader's ipc
 * namespace is attached (nattch, the 7th column of /proc/sysvipc/shm). */
static int sysvipc_probe(int sock)
{
	cleanup_fclose FILE *f = fopen("/proc/sysvipc/shm", "re");
	char line[512];
	if (f && !fgets(line, sizeof(line), f))
		return 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long nattch = 0;
		if (sscanf(line, "%*d %*d %*o %*u %*d %*d %lu", &nattch) == 1 && nattch)
			return 1;
	}
	return 0;
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
		return vs_error_set(err, ENOTSUP,
				    "refused: SysV shared memory of the tree's ipc namespace is "
				    "attached (mappings of it are not restored)");
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
		       .udiag_show =
			   UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS}};
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
				} else if (a->rta_type == UNIX_DIAG_VFS &&
					   RTA_PAYLOAD(a) >= sizeof(struct unix_diag_vfs)) {
					struct unix_diag_vfs vfs;
					memcpy(&vfs, RTA_DATA(a), sizeof(vfs));
					u.vfs_ino = vfs.udiag_vfs_ino;
					u.vfs_dev = vfs.udiag_vfs_dev;
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
		/* One record per read: a read stops at the end of a packet
		 * (O_DIRECT pipes), so packet boundaries survive. */
		char *buf = vs_xmalloc((size_t)n + 1);
		for (ssize_t off = 0; off < n && r >= 0;) {
			ssize_t got = read(tp[0], buf, (size_t)(n - off));
			if (got <= 0)
				r = vs_error_set(err, EIO, "pipe: short read of teed data");
			else
				r = put_data(w, CK_D_PIPE, id, (uint64_t)off, buf, (size_t)got,
					     err);
			off += got;
		}
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

/* id (host view) as seen in pid's user namespace; false if unmapped. */
static bool ns_id(pid_t hpid, const char *map, uint32_t id, uint64_t *out)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/%s", hpid, map);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		unsigned long inside, outside, count;
		if (sscanf(l, "%lu %lu %lu", &inside, &outside, &count) == 3 && id >= outside &&
		    id - outside < count) {
			*out = id - outside + inside;
			return true;
		}
	}
	return false;
}

/* Does pid map the inode st (maps lines: "... dev inode path")? */
static bool maps_inode(pid_t hpid, const struct stat *st)
{
	char p[64], line[4096];
	snprintf(p, sizeof(p), "/proc/%d/maps", hpid);
	cleanup_fclose FILE *f = fopen(p, "re");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*s %*s %*s %x:%x %lu", &maj, &min, &ino) == 3 && ino &&
		    ino == st->st_ino && maj == major(st->st_dev) && min == minor(st->st_dev))
			return true;
	}
	return false;
}

/* The locks held through this fd: the "lock:" lines of its fdinfo, e.g.
 * "lock:\t1: POSIX  ADVISORY  WRITE 20 fe:00:123 10 29". A POSIX lock
 * belongs to the process (it shows on the fds of the open file it was taken
 * through, in the owner only); OFD and flock locks belong to the open file
 * and show in every process that has it (new_file: first time we see it). */
static int dump_locks(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		      uint32_t id, bool new_file, const struct stat *st, const char *info,
		      struct vs_error *err)
{
	for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "lock:", 5) != 0)
			continue;
		char kind[16], mode[16], rw[16], end[32];
		long long start;
		int lpid;
		if (sscanf(l + 5, " %*d: %15s %15s %15s %d %*s %lld %31s", kind, mode, rw, &lpid,
			   &start, end) != 6)
			return vs_error_set(err, EBADMSG, "pid %d fd %d: unreadable lock line",
					    vpid, fd);
		struct ck_lock lk = {.fd = -1, .file_id = id, .start = start};
		if (strcmp(kind, "POSIX") == 0)
			lk.kind = CK_LOCK_POSIX;
		else if (strcmp(kind, "OFDLCK") == 0)
			lk.kind = CK_LOCK_OFD;
		else if (strcmp(kind, "FLOCK") == 0)
			lk.kind = CK_LOCK_FLOCK;
		else
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: %s lock (lease or delegation) "
					    "not supported",
					    vpid, fd, kind);
		if (strcmp(mode, "ADVISORY") != 0 ||
		    (strcmp(rw, "READ") != 0 && strcmp(rw, "WRITE") != 0))
			return vs_error_set(err, ENOTSUP,
					    "pid %d fd %d: refused: %s %s %s lock not supported",
					    vpid, fd, kind, mode, rw);
		lk.type = strcmp(rw, "READ") == 0 ? F_RDLCK : F_WRLCK;
		lk.len = strcmp(end, "EOF") == 0 ? 0 : atoll(end) - start + 1;
		if (start < 0 || lk.len < 0)
			return vs_error_set(err, EBADMSG, "pid %d fd %d: bad lock range", vpid, fd);
		if (lk.kind == CK_LOCK_POSIX) {
			/* The restore closes the fds it mapped files from, which
			 * would drop a POSIX lock on a mapped file again. */
			if (maps_inode(hpid, st))
				return vs_error_set(
				    err, ENOTSUP,
				    "pid %d fd %d: refused: POSIX lock on a file the "
				    "process also maps",
				    vpid, fd);
			lk.pid = vpid;
			lk.fd = fd;
		} else if (!new_file) {
			continue;
		}
		if (!w)
			continue; /* checking only */
		bool seen = false;
		for (size_t i = 0; i < f->locks_n && !seen; i++) {
			const struct ck_lock *o = &f->locks[i];
			seen = o->kind == lk.kind && o->file_id == lk.file_id && o->pid == lk.pid &&
			       o->type == lk.type && o->start == lk.start && o->len == lk.len;
		}
		if (seen)
			continue;
		f->locks = ck_xrealloc(f->locks, (f->locks_n + 1) * sizeof(*f->locks));
		f->locks[f->locks_n++] = lk;
		int r = ck_write_section(w, CK_SEC_LOCK, &lk, sizeof(lk), NULL, 0, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A unix socket bound to a path: does the path still name this socket?
 * If not, the restore binds and unlinks it again - possible only if its
 * directory still exists. Paths are resolved in the process's root. */
static int check_ux_name(pid_t hpid, pid_t vpid, int fd, const struct ck_ux *u, struct ck_file *cf,
			 struct vs_error *err)
{
	if (u->name_len == 0 || u->name[0] == 0)
		return 0; /* unbound or abstract */
	char name[sizeof(u->name) + 1];
	memcpy(name, u->name, u->name_len);
	name[u->name_len] = 0;
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", hpid);
	cleanup_close int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		return vs_error_sys(err, errno, "open the process's root");
	/* resolved as the slice sees it: ".." and symlinks stay inside */
	struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	struct stat st;
	int nfd = (int)syscall(SYS_openat2, rfd, name, &how, sizeof(how));
	bool same = nfd >= 0 && fstat(nfd, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    st.st_ino == u->vfs_ino && major(st.st_dev) == (u->vfs_dev >> 20) &&
		    minor(st.st_dev) == (u->vfs_dev & 0xfffff);
	if (nfd >= 0)
		close(nfd);
	if (same)
		return 0;
	if (name[0] != '/')
		return vs_error_set(err, ENOTSUP,
				    "refused: unix socket bound to relative path %s "
				    "that no longer names it",
				    name);
	*strrchr(name, '/') = 0;
	how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
	int dfd = (int)syscall(SYS_openat2, rfd, name[0] ? name : "/", &how, sizeof(how));
	if (dfd >= 0)
		close(dfd);
	memcpy(name, u->name, u->name_len);
	if (dfd < 0)
		return vs_error_set(err, ENOTSUP,
				    "refused: unix socket bound to %s, whose directory "
				    "no longer exists",
				    name);
	cf->u[0] |= CK_UX_F_NAME_GONE;
	return 0;
}

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
static int dump_inotify(struct ck_writer *w, pid_t hpid, pid_t vpid, int fd, int dup, uint32_t id,
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

/* --- TCP/UDP sockets ------------------------------------------------------ */

/* Integer options of TCP/UDP sockets that are recorded; the restore sets
 * those whose value differs from a new socket's. */
static const struct {
	int level, name;
} inet_opts[] = {
    {SOL_SOCKET, SO_REUSEADDR},
    {SOL_SOCKET, SO_REUSEPORT},
    {SOL_SOCKET, SO_KEEPALIVE},
    {SOL_SOCKET, SO_BROADCAST},
    {SOL_SOCKET, SO_RCVBUF},
    {SOL_SOCKET, SO_SNDBUF},
    {SOL_SOCKET, SO_RCVLOWAT},
    {SOL_SOCKET, SO_PRIORITY},
    {SOL_SOCKET, SO_OOBINLINE},
    {SOL_SOCKET, SO_DONTROUTE},
    {IPPROTO_IP, IP_TOS},
    {IPPROTO_IP, IP_TTL},
    {IPPROTO_IP, IP_FREEBIND},
    {IPPROTO_IP, IP_PKTINFO},
    {IPPROTO_IP, IP_RECVERR},
    {IPPROTO_IPV6, IPV6_V6ONLY},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO},
    {IPPROTO_TCP, TCP_NODELAY},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT},
    {IPPROTO_TCP, TCP_KEEPIDLE},
    {IPPROTO_TCP, TCP_KEEPINTVL},
    {IPPROTO_TCP, TCP_KEEPCNT},
    {IPPROTO_TCP, TCP_FASTOPEN},
    {IPPROTO_TCP, TCP_USER_TIMEOUT},
};
_Static_assert(VS_ARRAY_SIZE(inet_opts) <= CK_INET_OPTS, "room for every option");

static bool inet_opt_applies(int family, int protocol, int level)
{
	return level == SOL_SOCKET || (level == IPPROTO_IP && family == AF_INET) ||
	       (level == IPPROTO_IPV6 && family == AF_INET6) ||
	       (level == IPPROTO_TCP && protocol == IPPROTO_TCP);
}

/* Does a process in hpid's pid namespace (not its PID 1: the slice's own
 * reaper) have an fd for which match(pid, fd, arg) holds? */
static bool tree_fd_any(pid_t hpid, bool (*match)(pid_t pid, int fd, void *arg), void *arg)
{
	char p[64];
	struct stat me;
	snprintf(p, sizeof(p), "/proc/%d/ns/pid", hpid);
	if (stat(p, &me) < 0)
		return false;
	cleanup_closedir DIR *proc = opendir("/proc");
	struct dirent *de;
	while (proc && (de = readdir(proc))) {
		pid_t pid = atoi(de->d_name), inner;
		struct stat ns;
		if (pid <= 0)
			continue;
		snprintf(p, sizeof(p), "/proc/%d/ns/pid", pid);
		if (stat(p, &ns) < 0 || ns.st_ino != me.st_ino || ns.st_dev != me.st_dev ||
		    (ck_nspid(pid, &inner) == 0 && inner == 1))
			continue;
		snprintf(p, sizeof(p), "/proc/%d/fd", pid);
		cleanup_closedir DIR *fds = opendir(p);
		struct dirent *fe;
		while (fds && (fe = readdir(fds)))
			if (fe->d_name[0] != '.' && match(pid, atoi(fe->d_name), arg))
				return true;
	}
	return false;
}

#ifndef TCP_REPAIR_OFF_NO_WP
#define TCP_REPAIR_OFF_NO_WP -1
#endif

struct tcp_ends {
	struct sockaddr_storage local, peer;
	socklen_t llen, plen;
};

/* Is fd of pid the other end of connection q? */
static bool tcp_peer_match(pid_t pid, int fd, void *arg)
{
	const struct tcp_ends *q = arg;
	char p[64], link[64];
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", pid, fd);
	ssize_t l = readlink(p, link, sizeof(link) - 1);
	if (l < 7 || strncmp(link, "socket:", 7) != 0)
		return false;
	int d = getfd(pid, fd);
	if (d < 0)
		return false;
	struct sockaddr_storage a, b;
	socklen_t al = sizeof(a), bl = sizeof(b);
	bool m = getsockname(d, (struct sockaddr *)&a, &al) == 0 &&
		 getpeername(d, (struct sockaddr *)&b, &bl) == 0 && al == q->plen &&
		 bl == q->llen && !memcmp(&a, &q->peer, al) && !memcmp(&b, &q->local, bl);
	close(d);
	return m;
}

static int tcp_queue(int dup, int queue, uint32_t *seq, struct vs_error *err)
{
	socklen_t l = sizeof(*seq);
	if (setsockopt(dup, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) < 0 ||
	    getsockopt(dup, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &l) < 0)
		return vs_error_sys(err, errno, "TCP connection: queue %d sequence", queue);
	return 0;
}

static int tcp_peek(struct ck_writer *w, int dup, int queue, uint32_t kind, uint32_t id,
		    uint32_t len, struct vs_error *err)
{
	if (!len)
		return 0;
	if (setsockopt(dup, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) < 0)
		return vs_error_sys(err, errno, "TCP connection: select queue %d", queue);
	char *buf = vs_xmalloc(len);
	ssize_t n = recv(dup, buf, len, MSG_PEEK | MSG_DONTWAIT);
	int r = n == (ssize_t)len
		    ? put_data(w, kind, id, 0, buf, len, err)
		    : vs_error_sys(err, n < 0 ? errno : EIO,
				   "TCP connection: read %u queued bytes of queue %d", len, queue);
	free(buf);
	return r;
}

/* An established connection between two sockets of the tree, read in
 * repair mode (nothing is sent or consumed; the tree is frozen): sequence
 * numbers, queues, negotiated options, window, timestamp. */
static int dump_tcp_conn(struct ck_writer *w, int dup, struct ck_inet *n, const struct tcp_info *ti,
			 struct vs_error *err)
{
	int on = 1, off = TCP_REPAIR_OFF_NO_WP, noq = TCP_NO_QUEUE;
	if (setsockopt(dup, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
		return vs_error_sys(err, errno, "TCP connection: TCP_REPAIR");
	int r = 0, outq = 0, unsent = 0, inq = 0;
	socklen_t l = sizeof(int);
	struct tcp_repair_window win;
	socklen_t wl = sizeof(win);
	if (ioctl(dup, SIOCOUTQ, &outq) < 0 || ioctl(dup, SIOCOUTQNSD, &unsent) < 0 ||
	    ioctl(dup, SIOCINQ, &inq) < 0 ||
	    getsockopt(dup, IPPROTO_TCP, TCP_MAXSEG, &n->mss, &l) < 0 ||
	    getsockopt(dup, IPPROTO_TCP, TCP_TIMESTAMP, &n->timestamp, &l) < 0 ||
	    getsockopt(dup, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &wl) < 0)
		r = vs_error_sys(err, errno, "TCP connection: read its state");
	if (r >= 0) {
		n->outq_len = (uint32_t)outq;
		n->unsent_len = (uint32_t)unsent;
		n->inq_len = (uint32_t)inq;
		n->tcpi_options = ti->tcpi_options;
		n->snd_wscale = ti->tcpi_snd_wscale;
		n->rcv_wscale = ti->tcpi_rcv_wscale;
		memcpy(n->window, &win, sizeof(n->window));
		r = tcp_queue(dup, TCP_SEND_QUEUE, &n->snd_seq, err);
	}
	if (r >= 0)
		r = tcp_queue(dup, TCP_RECV_QUEUE, &n->rcv_seq, err);
	if (r >= 0 && w)
		r = tcp_peek(w, dup, TCP_SEND_QUEUE, CK_D_TCP_SEND, n->file_id, n->outq_len, err);
	if (r >= 0 && w)
		r = tcp_peek(w, dup, TCP_RECV_QUEUE, CK_D_TCP_RECV, n->file_id, n->inq_len, err);
	setsockopt(dup, IPPROTO_TCP, TCP_REPAIR_QUEUE, &noq, sizeof(noq));
	setsockopt(dup, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off));
	return r;
}

/* A TCP listener, a bound or unbound TCP socket, a TCP connection between
 * two sockets of the tree, or a UDP socket (bound, connected) of the
 * tree's own network namespace; everything else is refused. If w is set,
 * its CK_SEC_INET record (and queues) are written. */
static int dump_inet(struct ck_writer *w, pid_t hpid, int dup, uint32_t id, struct vs_error *err)
{
	struct ck_inet n = {.file_id = id};
	socklen_t l = sizeof(int);
	if (getsockopt(dup, SOL_SOCKET, SO_DOMAIN, &n.family, &l) < 0 ||
	    getsockopt(dup, SOL_SOCKET, SO_TYPE, &n.type, &l) < 0 ||
	    getsockopt(dup, SOL_SOCKET, SO_PROTOCOL, &n.protocol, &l) < 0)
		return vs_error_sys(err, errno, "socket: getsockopt");
	char p[64];
	struct stat mine, its;
	snprintf(p, sizeof(p), "/proc/%d/ns/net", hpid);
	int ns = ioctl(dup, SIOCGSKNS);
	bool same = ns >= 0 && fstat(ns, &its) == 0 && stat(p, &mine) == 0 &&
		    its.st_ino == mine.st_ino && its.st_dev == mine.st_dev;
	if (ns >= 0)
		close(ns);
	if (!same)
		return vs_error_set(
		    err, ENOTSUP,
		    "refused: socket of another network namespace than the process's");
	if (n.type == SOCK_STREAM && n.protocol == IPPROTO_TCP) {
		struct tcp_info ti;
		l = sizeof(ti);
		memset(&ti, 0, sizeof(ti));
		if (getsockopt(dup, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
			return vs_error_sys(err, errno, "TCP socket: TCP_INFO");
		n.state = ti.tcpi_state;
		if (ti.tcpi_state == TCP_LISTEN) {
			if (ti.tcpi_unacked) /* listeners: the accept queue */
				return vs_error_set(err, ENOTSUP,
						    "refused: TCP listener with %u connections not "
						    "accepted yet",
						    ti.tcpi_unacked);
			n.backlog = ti.tcpi_sacked; /* listeners: the backlog */
		} else if (ti.tcpi_state == TCP_ESTABLISHED) {
			struct tcp_ends q;
			memset(&q, 0, sizeof(q));
			q.llen = q.plen = sizeof(q.local);
			if (getsockname(dup, (struct sockaddr *)&q.local, &q.llen) < 0 ||
			    getpeername(dup, (struct sockaddr *)&q.peer, &q.plen) < 0)
				return vs_error_sys(err, errno, "TCP connection: addresses");
			if (!tree_fd_any(hpid, tcp_peer_match, &q))
				return vs_error_set(
				    err, ENOTSUP,
				    "refused: TCP connection to a peer outside the "
				    "tree (its address does not move with the slice)");
			if (q.plen > sizeof(n.peer))
				return vs_error_set(err, EINVAL, "TCP connection: peer address");
			memcpy(n.peer, &q.peer, q.plen);
			n.peer_len = q.plen;
			if (w) {
				int r = dump_tcp_conn(w, dup, &n, &ti, err);
				if (r < 0)
					return r;
			}
		} else if (ti.tcpi_state != TCP_CLOSE) {
			return vs_error_set(err, ENOTSUP,
					    "refused: TCP connection in state %u (closing) not "
					    "migrated",
					    ti.tcpi_state);
		}
	} else if (n.type == SOCK_DGRAM && n.protocol == IPPROTO_UDP) {
		int q = 0;
		if (ioctl(dup, FIONREAD, &q) < 0 || q > 0)
			return vs_error_set(err, ENOTSUP,
					    "refused: UDP socket with queued datagrams (their "
					    "senders cannot be replayed)");
		n.state = TCP_CLOSE;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getpeername(dup, (struct sockaddr *)&ss, &sl) == 0 && sl <= sizeof(n.peer)) {
			memcpy(n.peer, &ss, sl);
			n.peer_len = sl;
		}
	} else {
		return vs_error_set(err, ENOTSUP,
				    "refused: socket family %d type %d protocol %d not supported",
				    n.family, n.type, n.protocol);
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(dup, (struct sockaddr *)&ss, &sl) == 0 && sl <= sizeof(n.local)) {
		in_port_t port = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
							 : ((struct sockaddr_in6 *)&ss)->sin6_port;
		if (port) {
			memcpy(n.local, &ss, sl);
			n.local_len = sl;
		}
	}
	for (size_t i = 0; i < VS_ARRAY_SIZE(inet_opts); i++) {
		int v = 0;
		l = sizeof(v);
		if (!inet_opt_applies(n.family, n.protocol, inet_opts[i].level) ||
		    getsockopt(dup, inet_opts[i].level, inet_opts[i].name, &v, &l) < 0)
			continue;
		n.opt[n.nopts++] = (struct ck_sockopt){inet_opts[i].level, inet_opts[i].name, v, 0};
	}
	return w ? ck_write_section(w, CK_SEC_INET, &n, sizeof(n), NULL, 0, err) : 0;
}

/* --- SysV IPC objects of the tree's ipc namespace ----------------------- */

/* ids listed in /proc/sysvipc/<what> (second column), as the reader's ipc
 * namespace has them */
static size_t sysv_ids(const char *what, int **ids)
{
	char p[64], line[512];
	snprintf(p, sizeof(p), "/proc/sysvipc/%s", what);
	cleanup_fclose FILE *f = fopen(p, "re");
	size_t n = 0;
	*ids = NULL;
	if (f && !fgets(line, sizeof(line), f)) /* header */
		return 0;
	while (f && fgets(line, sizeof(line), f)) {
		int key, id;
		if (sscanf(line, "%d %d", &key, &id) != 2)
			continue;
		*ids = ck_xrealloc(*ids, (n + 1) * sizeof(**ids));
		(*ids)[n++] = id;
	}
	return n;
}

static bool put_rec(int out, uint32_t tag, const void *rec, size_t rlen, const void *data,
		    size_t dlen)
{
	return write(out, &tag, 4) == 4 && write(out, rec, rlen) == (ssize_t)rlen &&
	       (!dlen || write(out, data, dlen) == (ssize_t)dlen);
}

/* In a child inside the tree's ipc namespace: every object as tag 1 +
 * struct ck_sysv (host uid/gid) and its contents as tag 2 + struct ck_data
 * + bytes, into a memfd handed back over sock. Exit 0, or 2 + which failed. */
static int sysv_collect(int sock)
{
	int out = memfd_create("vslice-sysv", MFD_CLOEXEC);
	if (out < 0)
		return 2;
	int *ids, ok = 1;
	size_t n = sysv_ids("shm", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct shmid_ds ds;
		if (shmctl(ids[i], IPC_STAT, &ds) < 0)
			return 3;
		if (ds.shm_nattch > 0)
			return 4; /* refused by the check before; attached meanwhile */
		struct ck_sysv r = {.kind = CK_SYSV_SHM,
				    .id = ids[i],
				    .key = ds.shm_perm.__key,
				    .mode = ds.shm_perm.mode & 0777,
				    .uid = ds.shm_perm.uid,
				    .gid = ds.shm_perm.gid,
				    .size = ds.shm_segsz};
		void *m = shmat(ids[i], NULL, SHM_RDONLY);
		if (m == (void *)-1)
			return 5;
		struct ck_data d = {.kind = CK_D_SYSV_SHM, .id = (uint64_t)ids[i], .len = r.size};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0) &&
		     put_rec(out, 2, &d, sizeof(d), m, r.size);
		shmdt(m);
	}
	free(ids);
	long msgmax = 8192;
	char mm[32];
	if (ck_read_small("/proc/sys/kernel/msgmax", mm, sizeof(mm)) > 0)
		msgmax = atol(mm);
	char *buf = vs_xmalloc(sizeof(long) + (size_t)msgmax);
	n = sysv_ids("msg", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct msqid_ds ds;
		if (msgctl(ids[i], IPC_STAT, &ds) < 0)
			return 6;
		struct ck_sysv r = {.kind = CK_SYSV_MSG,
				    .id = ids[i],
				    .key = ds.msg_perm.__key,
				    .mode = ds.msg_perm.mode & 0777,
				    .uid = ds.msg_perm.uid,
				    .gid = ds.msg_perm.gid,
				    .size = ds.msg_qbytes,
				    .nitems = (uint32_t)ds.msg_qnum};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0);
		for (uint32_t k = 0; k < r.nitems && ok; k++) {
			/* MSG_COPY: the k-th message, left in the queue */
			ssize_t got = msgrcv(ids[i], buf, (size_t)msgmax, k, IPC_NOWAIT | MSG_COPY);
			if (got < 0)
				return 7;
			long mt;
			memcpy(&mt, buf, sizeof(mt));
			uint64_t mtype = (uint64_t)mt;
			struct ck_data d = {.kind = CK_D_SYSV_MSG,
					    .id = (uint64_t)ids[i],
					    .off = k,
					    .len = 8 + (uint64_t)got};
			ok = put_rec(out, 2, &d, sizeof(d), &mtype, 8) &&
			     write(out, buf + sizeof(long), (size_t)got) == got;
		}
	}
	free(buf);
	free(ids);
	n = sysv_ids("sem", &ids);
	for (size_t i = 0; i < n && ok; i++) {
		struct semid_ds ds;
		union {
			struct semid_ds *buf;
			unsigned short *array;
		} arg = {.buf = &ds};
		if (semctl(ids[i], 0, IPC_STAT, arg) < 0)
			return 8;
		struct ck_sysv r = {.kind = CK_SYSV_SEM,
				    .id = ids[i],
				    .key = ds.sem_perm.__key,
				    .mode = ds.sem_perm.mode & 0777,
				    .uid = ds.sem_perm.uid,
				    .gid = ds.sem_perm.gid,
				    .size = ds.sem_nsems};
		unsigned short *vals = vs_xcalloc(r.size, sizeof(*vals));
		arg.array = vals;
		if (semctl(ids[i], 0, GETALL, arg) < 0)
			return 9;
		struct ck_data d = {
		    .kind = CK_D_SYSV_SEM, .id = (uint64_t)ids[i], .len = r.size * sizeof(*vals)};
		ok = put_rec(out, 1, &r, sizeof(r), NULL, 0) &&
		     put_rec(out, 2, &d, sizeof(d), vals, d.len);
		free(vals);
	}
	free(ids);
	if (!ok)
		return 10;
	char cbuf[CMSG_SPACE(sizeof(int))];
	char b = 0;
	struct iovec iov = {&b, 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &out, sizeof(int));
	return sendmsg(sock, &mh, 0) == 1 ? 0 : 11;
}

/* The tree's SysV objects into the stream: records (owners mapped into
 * the slice's user ns) and their contents. */
static int dump_sysv(pid_t hpid, struct ck_writer *w, struct vs_error *err)
{
	int mfd = -1, code;
	int r = ns_child(hpid, sysv_collect, &mfd, &code);
	if (r < 0 || code)
		return vs_error_set(
		    err, r < 0 ? -r : EIO,
		    "SysV IPC objects of the tree: collecting them failed (step %d)", code);
	cleanup_close int fd = mfd;
	off_t size = lseek(fd, 0, SEEK_END);
	if (fd < 0 || size < 0)
		return vs_error_set(err, EIO, "SysV IPC objects of the tree: no result");
	uint8_t *p = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (size && p == MAP_FAILED)
		return vs_error_sys(err, errno, "SysV IPC objects: map the result");
	for (off_t o = 0; o + 4 <= size && r >= 0;) {
		uint32_t tag;
		memcpy(&tag, p + o, 4);
		o += 4;
		if (tag == 1 && o + (off_t)sizeof(struct ck_sysv) <= size) {
			struct ck_sysv s;
			memcpy(&s, p + o, sizeof(s));
			o += (off_t)sizeof(s);
			uint64_t u, g;
			if (!ns_id(hpid, "uid_map", s.uid, &u) ||
			    !ns_id(hpid, "gid_map", s.gid, &g)) {
				r = vs_error_set(
				    err, ENOTSUP,
				    "refused: SysV IPC object %d owned by %u:%u, which the "
				    "slice does not map",
				    s.id, s.uid, s.gid);
				break;
			}
			s.uid = (uint32_t)u;
			s.gid = (uint32_t)g;
			r = ck_write_section(w, CK_SEC_SYSV, &s, sizeof(s), NULL, 0, err);
		} else if (tag == 2 && o + (off_t)sizeof(struct ck_data) <= size) {
			struct ck_data d;
			memcpy(&d, p + o, sizeof(d));
			o += (off_t)sizeof(d);
			if ((uint64_t)(size - o) < d.len) {
				r = vs_error_set(err, EIO, "SysV IPC objects: short result");
				break;
			}
			r = ck_write_section(w, CK_SEC_DATA, &d, sizeof(d), p + o, d.len, err);
			o += (off_t)d.len;
		} else {
			r = vs_error_set(err, EIO, "SysV IPC objects: bad result");
		}
	}
	if (p)
		munmap(p, (size_t)size);
	return r;
}

/* Recreate the SysV objects in the caller's ipc namespace with their ids,
 * owners, modes and contents. Creation and change times and creator/last
 * pids are the restore's. */
static int sysv_restore(const struct ckpt_image *img, struct vs_error *err)
{
	for (size_t i = 0; i < img->sysv.n; i++) {
		const struct ck_sysv *s = &img->sysv.v[i];
		static const char *const next[] = {"", "shm_next_id", "msg_next_id", "sem_next_id"};
		char p[64], v[16];
		snprintf(p, sizeof(p), "/proc/sys/kernel/%s", next[s->kind]);
		int n = snprintf(v, sizeof(v), "%d", s->id);
		int fd = open(p, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, v, (size_t)n) != n) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return vs_error_sys(err, e, "SysV IPC object %d: %s", s->id, p);
		}
		close(fd);
		int id = -1, flags = IPC_CREAT | IPC_EXCL | (int)s->mode;
		const struct ck_data_r *d = NULL;
		for (size_t k = 0; k < img->data.n && !d && s->kind != CK_SYSV_MSG; k++)
			if (img->data.v[k].h.kind ==
				(s->kind == CK_SYSV_SHM ? CK_D_SYSV_SHM : CK_D_SYSV_SEM) &&
			    img->data.v[k].h.id == (uint64_t)s->id)
				d = &img->data.v[k];
		if (s->kind == CK_SYSV_SHM) {
			id = shmget(s->key, s->size, flags);
			struct shmid_ds ds;
			void *m = id == s->id ? shmat(id, NULL, 0) : (void *)-1;
			if (m == (void *)-1 || (d && (d->h.len > s->size || d->h.off)))
				return vs_error_sys(err, errno, "SysV shared memory %d", s->id);
			if (d)
				memcpy(m, d->data, d->h.len);
			shmdt(m);
			if (shmctl(id, IPC_STAT, &ds) == 0) {
				ds.shm_perm.uid = s->uid;
				ds.shm_perm.gid = s->gid;
				ds.shm_perm.mode = s->mode;
				if (shmctl(id, IPC_SET, &ds) < 0)
					id = -1;
			}
		} else if (s->kind == CK_SYSV_MSG) {
			id = msgget(s->key, flags);
			struct msqid_ds ds;
			for (uint32_t k = 0; k < s->nitems && id == s->id; k++) {
				const struct ck_data_r *m = NULL;
				for (size_t j = 0; j < img->data.n && !m; j++)
					if (img->data.v[j].h.kind == CK_D_SYSV_MSG &&
					    img->data.v[j].h.id == (uint64_t)s->id &&
					    img->data.v[j].h.off == k && img->data.v[j].h.len >= 8)
						m = &img->data.v[j];
				if (!m)
					return vs_error_set(
					    err, EINVAL,
					    "SysV message queue %d: message %u missing", s->id, k);
				char *buf = vs_xmalloc(sizeof(long) + m->h.len);
				long mt = (long)*(const uint64_t *)(const void *)m->data;
				memcpy(buf, &mt, sizeof(mt));
				memcpy(buf + sizeof(long), m->data + 8, m->h.len - 8);
				int rc = msgsnd(id, buf, m->h.len - 8, IPC_NOWAIT);
				free(buf);
				if (rc < 0)
					return vs_error_sys(err, errno,
							    "SysV message queue %d: message %u",
							    s->id, k);
			}
			if (id == s->id && msgctl(id, IPC_STAT, &ds) == 0) {
				ds.msg_perm.uid = s->uid;
				ds.msg_perm.gid = s->gid;
				ds.msg_perm.mode = s->mode;
				ds.msg_qbytes = s->size;
				if (msgctl(id, IPC_SET, &ds) < 0)
					id = -1;
			}
		} else {
			id = semget(s->key, (int)s->size, flags);
			struct semid_ds ds;
			union {
				struct semid_ds *buf;
				unsigned short *array;
			} arg = {.buf = &ds};
			if (id == s->id && d && d->h.len == s->size * sizeof(unsigned short)) {
				unsigned short *vals = vs_xmalloc(d->h.len);
				memcpy(vals, d->data, d->h.len);
				arg.array = vals;
				int rc = semctl(id, 0, SETALL, arg);
				free(vals);
				if (rc < 0)
					return vs_error_sys(err, errno,
							    "SysV semaphores %d: values", s->id);
			}
			arg.buf = &ds;
			if (id == s->id && semctl(id, 0, IPC_STAT, arg) == 0) {
				ds.sem_perm.uid = s->uid;
				ds.sem_perm.gid = s->gid;
				ds.sem_perm.mode = s->mode;
				if (semctl(id, 0, IPC_SET, arg) < 0)
					id = -1;
			}
		}
		if (id != s->id)
			return vs_error_sys(err, id < 0 ? errno : EEXIST,
					    "SysV IPC object %d: created as %d", s->id, id);
	}
	return 0;
}

/* Host side of the restore: the slice's /proc/sys is read-only, so the
 * *_next_id knobs are written by a child of ours that joined the restored
 * tree's user and ipc namespaces (ids then are the slice's). */
int ck_files_restore_host(const struct ckpt_image *img, pid_t root_hpid, struct vs_error *err)
{
	if (!img->sysv.n)
		return 0;
	int pp[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	pid_t c = fork();
	if (c < 0) {
		int e = errno;
		close(pp[0]);
		close(pp[1]);
		return vs_error_sys(err, e, "fork");
	}
	if (c == 0) {
		struct vs_error e2;
		char p[64];
		struct stat mine, its;
		snprintf(p, sizeof(p), "/proc/%d/ns/user", root_hpid);
		int ufd = open(p, O_RDONLY | O_CLOEXEC);
		snprintf(p, sizeof(p), "/proc/%d/ns/ipc", root_hpid);
		int ifd = open(p, O_RDONLY | O_CLOEXEC);
		bool same_user = ufd >= 0 && fstat(ufd, &its) == 0 &&
				 stat("/proc/self/ns/user", &mine) == 0 &&
				 its.st_ino == mine.st_ino;
		int r = 0;
		if (ufd < 0 || ifd < 0 || (!same_user && setns(ufd, CLONE_NEWUSER) < 0) ||
		    setns(ifd, CLONE_NEWIPC) < 0)
			r = vs_error_sys(&e2, errno, "join the ipc namespace of pid %d", root_hpid);
		else
			r = sysv_restore(img, &e2);
		if (r < 0 && write(pp[1], e2.msg, strlen(e2.msg)) < 0)
			_exit(2);
		_exit(r < 0 ? 1 : 0);
	}
	close(pp[1]);
	char msg[VS_ERROR_MAX];
	ssize_t n = vs_read_all(pp[0], msg, sizeof(msg) - 1);
	close(pp[0]);
	int status;
	while (waitpid(c, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	msg[n > 0 ? n : 0] = 0;
	return vs_error_set(err, EIO, "restore SysV IPC objects: %s",
			    msg[0] ? msg : "the helper died");
}

/* An unlinked regular file: owner, mode, times; content once per inode. */
static int dump_ghost(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		      int dup, const struct stat *st, struct ck_file *cf, struct vs_error *err)
{
	cf->ghost = 1;
	if (!ns_id(hpid, "uid_map", st->st_uid, &cf->u[0]) ||
	    !ns_id(hpid, "gid_map", st->st_gid, &cf->u[1]))
		return vs_error_set(err, ENOTSUP,
				    "refused: unlinked file owned by %u:%u, which "
				    "the slice does not map",
				    st->st_uid, st->st_gid);
	cf->u[2] = st->st_dev;
	cf->u[3] = CK_FILE_F_OWNER;
	cf->tv[0] = st->st_atim.tv_sec;
	cf->tv[1] = st->st_atim.tv_nsec;
	cf->tv[2] = st->st_mtim.tv_sec;
	cf->tv[3] = st->st_mtim.tv_nsec;
	for (size_t i = 0; i < f->ghosts_n; i++)
		if (f->ghosts[i][0] == st->st_dev && f->ghosts[i][1] == st->st_ino)
			return 0; /* another open of an inode we have: shared on restore */
	f->ghosts = ck_xrealloc(f->ghosts, (f->ghosts_n + 1) * sizeof(*f->ghosts));
	f->ghosts[f->ghosts_n][0] = st->st_dev;
	f->ghosts[f->ghosts_n++][1] = st->st_ino;
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", dup);
	cleanup_close int rd = open(p, O_RDONLY | O_CLOEXEC | O_NOATIME);
	if (rd < 0)
		rd = open(p, O_RDONLY | O_CLOEXEC);
	if (rd < 0)
		return vs_error_sys(err, errno, "reopen unlinked file");
	char *buf = vs_xmalloc(1 << 20);
	int r = 0;
	for (off_t o = 0; o < st->st_size && r >= 0;) {
		ssize_t n = pread(rd, buf, 1 << 20, o);
		if (n <= 0)
			break;
		r = put_data(w, CK_D_GHOST, cf->id, (uint64_t)o, buf, (size_t)n, err);
		o += n;
	}
	free(buf);
	return r;
}

/* Epoll targets: kept until every fd of the tree is known, then each is
 * resolved to the open file it watches (ck_files_finish). */
static void collect_epoll(struct ck_files *f, pid_t vpid, int fd, int dup, uint32_t id,
			  const char *info)
{
	size_t first = f->ept_n;
	for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "tfd:", 4) != 0)
			continue;
		int tfd;
		unsigned ev;
		unsigned long long data, pos, ino;
		if (sscanf(l, "tfd: %d events: %x data: %llx pos:%llu ino:%llx", &tfd, &ev, &data,
			   &pos, &ino) != 5)
			continue;
		struct ck_eptarget t = {
		    .rec = {.file_id = id, .tfd = tfd, .events = ev, .data = data},
		    .epdup = dup,
		    .ino = ino,
		    .vpid = vpid,
		    .epfd = fd};
		for (size_t i = first; i < f->ept_n; i++)
			t.toff += f->ept[i].rec.tfd == tfd;
		f->ept = ck_xrealloc(f->ept, (f->ept_n + 1) * sizeof(*f->ept));
		f->ept[f->ept_n++] = t;
	}
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
				return vs_error_set(err, ENOTSUP,
						    "refused: %s is outside the tree's file system",
						    link);
			cf->external = 1;
			cf->ext_fd = fd;
			ck_copy(cf->path, sizeof(cf->path), link);
			break;
		}
		if (!ck_copy(cf->path, sizeof(cf->path), link))
			return vs_error_set(err, ENAMETOOLONG, "refused: path too long");
		char *del = strstr(cf->path, " (deleted)");
		if (kind == CK_F_REG && (st->st_nlink == 0 || del)) {
			if (del)
				*del = 0;
			r = dump_ghost(f, w, hpid, vpid, fd, dup, st, cf, err);
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
			return vs_error_set(
			    err, ENOENT, "unix socket %" PRIu64 " not found by sock_diag", cf->ino);
		cf->sk_type = u->type;
		cf->sk_state = u->state;
		cf->peer_ino = u->peer;
		cf->sk_shutdown = u->shutdown;
		cf->sk_name_len = u->name_len;
		memcpy(cf->sk_name, u->name, u->name_len);
		r = check_ux_name(hpid, vpid, fd, u, cf, err);
		if (r < 0)
			return r;
		if (u->state == 10 /* TCP_LISTEN */) {
			cf->sk_backlog = u->wqlen;
			if (u->rqlen)
				return vs_error_set(err, ENOTSUP,
						    "refused: listening unix socket with %u "
						    "unaccepted connections",
						    u->rqlen);
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
	case CK_F_TIMERFD: {
		/* An expired repeating timer nobody read reports it_value 0
		 * and the expiry time is lost to fdinfo. timerfd_gettime does
		 * what the next read would: counts the missed periods into
		 * ticks and re-arms for the next period - invisible to the
		 * process, and fdinfo then shows the exact next expiry. */
		struct itimerspec cur;
		char tinfo[1024];
		if (timerfd_gettime(dup, &cur) == 0 &&
		    read_fdinfo(hpid, fd, tinfo, sizeof(tinfo)) >= 0)
			info = tinfo;
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
	}
	case CK_F_EPOLL:
		cf->owner_pid = vpid;
		collect_epoll(f, vpid, fd, dup, cf->id, info);
		break;
	case CK_F_INOTIFY:
		r = dump_inotify(w, hpid, vpid, fd, dup, cf->id, info, err);
		break;
	case CK_F_INET:
		r = dump_inet(w, hpid, dup, cf->id, err);
		break;
	}
	return r;
}

int ck_files_dump(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid,
		  struct vs_error *err)
{
	if (!f->ns_hpid)
		f->ns_hpid = hpid;
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
		bool new_file = !id;
		if (!id) {
			int dup = getfd(hpid, fd);
			if (dup < 0)
				return vs_error_sys(err, -dup, "pid %d fd %d: pidfd_getfd", vpid,
						    fd);
			struct ck_fobj o = {.id = f->next_id++,
					    .kind = kind,
					    .hpid = hpid,
					    .vpid = vpid,
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
		r = dump_locks(f, w, hpid, vpid, fd, id, new_file, &st, info, err);
		if (r < 0)
			return r;
		struct ck_fd rec = {.pid = vpid, .fd = fd, .file_id = id, .cloexec = cloexec};
		r = ck_write_section(w, CK_SEC_FD, &rec, sizeof(rec), NULL, 0, err);
		if (r < 0)
			return r;
		f->nr_fds++;
	}
	return 0;
}

struct ep_query {
	pid_t hpid;
	struct {
		uint32_t efd, tfd, toff;
	} slot;
};

static bool ep_match(pid_t pid, int fd, void *arg)
{
	struct ep_query *q = arg;
	return syscall(SYS_kcmp, pid, q->hpid, KCMP_EPOLL_TFD, fd, &q->slot) == 0;
}

static bool sock_match(pid_t pid, int fd, void *arg)
{
	char p[64], link[64], want[64];
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", pid, fd);
	ssize_t l = readlink(p, link, sizeof(link) - 1);
	if (l < 0)
		return false;
	link[l] = 0;
	snprintf(want, sizeof(want), "socket:[%" PRIu64 "]", *(uint64_t *)arg);
	return strcmp(link, want) == 0;
}

/* What a unix socket is connected to must be restorable: a socket of the
 * tree, and for a datagram socket one it can connect to again. */
static int check_ux_peer(struct ck_files *f, pid_t hpid, pid_t vpid, int fd, const struct ck_ux *u,
			 struct vs_error *err)
{
	if (!u->peer || u->peer == u->ino || u->state == 10 /* TCP_LISTEN */)
		return 0;
	uint64_t peer = u->peer;
	if (!tree_fd_any(hpid, sock_match, &peer))
		return vs_error_set(err, ENOTSUP,
				    "pid %d fd %d: refused: unix socket connected outside the tree",
				    vpid, fd);
	struct ck_ux *p = find_ux(f, u->peer);
	if (u->type == SOCK_DGRAM && p && p->peer != u->ino && p->name_len == 0)
		return vs_error_set(
		    err, ENOTSUP,
		    "pid %d fd %d: refused: datagram socket connected to an unnamed "
		    "socket that is connected elsewhere",
		    vpid, fd);
	return 0;
}

/* Every epoll target must be a file some process of the tree has open. */
static int check_epoll(pid_t hpid, pid_t vpid, int fd, const char *info, struct vs_error *err)
{
	int prev[64], nprev = 0;
	for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		int tfd;
		if (strncmp(l, "tfd:", 4) != 0 || sscanf(l, "tfd: %d", &tfd) != 1)
			continue;
		struct ep_query q = {.hpid = hpid, .slot = {(uint32_t)fd, (uint32_t)tfd, 0}};
		for (int i = 0; i < nprev; i++)
			q.slot.toff += prev[i] == tfd;
		if (nprev < (int)VS_ARRAY_SIZE(prev))
			prev[nprev++] = tfd;
		if (!tree_fd_any(hpid, ep_match, &q))
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d fd %d: refused: epoll watches fd %d, whose file "
			    "no process of the tree has open",
			    vpid, fd, tfd);
	}
	return 0;
}

/* Refuse what cannot be restored exactly, on the running process: kinds,
 * locks, unix socket names and peers, epoll targets. Runs again on the
 * stopped tree; the dump itself re-checks what needs every fd. */
int ck_files_check(pid_t hpid, pid_t vpid, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", hpid);
	cleanup_closedir DIR *dir = opendir(path);
	if (!dir)
		return vs_error_sys(err, errno, "pid %d: list fds", vpid);
	/* SEM_UNDO adjustments live in the task's undo list, which cannot be
	 * read: refuse a task that has one (kcmp: ours is empty) */
	if (syscall(SYS_kcmp, getpid(), hpid, KCMP_SYSVSEM, 0, 0) != 0)
		return vs_error_set(err, ENOTSUP,
				    "pid %d: refused: it has SysV semaphore undo state (SEM_UNDO), "
				    "which cannot be read",
				    vpid);
	struct ck_files diag;
	ck_files_init(&diag);
	int r = 0;
	struct dirent *de;
	while (r >= 0 && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		char p2[96], link[4096], info[16384];
		snprintf(p2, sizeof(p2), "/proc/%d/fd/%d", hpid, fd);
		ssize_t l = readlink(p2, link, sizeof(link) - 1);
		if (l < 0)
			continue;
		link[l] = 0;
		struct stat st;
		if (stat(p2, &st) < 0)
			memset(&st, 0, sizeof(st));
		uint32_t kind;
		r = classify(hpid, vpid, fd, link, &st, &kind, err);
		if (r < 0 || read_fdinfo(hpid, fd, info, sizeof(info)) < 0)
			continue; /* gone meanwhile: the stopped check sees it */
		r = dump_locks(NULL, NULL, hpid, vpid, fd, 0, true, &st, info, err);
		if (r >= 0 && kind == CK_F_EPOLL)
			r = check_epoll(hpid, vpid, fd, info, err);
		if (r >= 0 && (kind == CK_F_INOTIFY || kind == CK_F_INET)) {
			int dup = getfd(hpid, fd);
			if (dup < 0) {
				r = vs_error_sys(err, -dup, "pid %d fd %d: pidfd_getfd", vpid, fd);
			} else {
				r = kind == CK_F_INET
					? dump_inet(NULL, hpid, dup, 0, err)
					: dump_inotify(NULL, hpid, vpid, fd, dup, 0, info, err);
				close(dup);
				if (r < 0)
					vs_error_wrap(err, "pid %d fd %d", vpid, fd);
			}
		}
		if (r >= 0 && kind == CK_F_UNIX) {
			r = load_unix_diag(&diag, hpid, err);
			struct ck_ux *u = r >= 0 ? find_ux(&diag, st.st_ino) : NULL;
			struct ck_file cf = {0};
			if (u && (r = check_ux_name(hpid, vpid, fd, u, &cf, err)) < 0)
				vs_error_wrap(err, "pid %d fd %d", vpid, fd);
			else if (u)
				r = check_ux_peer(&diag, hpid, vpid, fd, u, err);
		}
	}
	ck_files_free(&diag);
	return r < 0 ? r : 0;
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
		if (!inside)
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d fd %d: refused: unix socket connected outside the tree",
			    f->obj[i].vpid, f->obj[i].fd);
		/* A datagram socket connected to an unnamed one that is not
		 * connected back cannot be connected again (self: bound name). */
		struct ck_ux *p = find_ux(f, u->peer);
		if (u->type == SOCK_DGRAM && u->peer != u->ino && p && p->peer != u->ino &&
		    (p->name_len == 0))
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d fd %d: refused: datagram socket connected to an "
			    "unnamed socket that is connected elsewhere",
			    f->obj[i].vpid, f->obj[i].fd);
	}
	/* the tree's SysV IPC objects (the namespace is the slice's) */
	if (f->ns_hpid) {
		int r = ck_writer_sync(w, err); /* no writer thread while we fork */
		if (r >= 0)
			r = dump_sysv(f->ns_hpid, w, err);
		if (r < 0)
			return r;
	}
	/* Epoll targets: which open file each one watches. The fd number it
	 * was added under may be closed or reused since; KCMP_EPOLL_TFD
	 * compares a target (epoll, fd number, nth of that number) with a file. */
	for (size_t i = 0; i < f->ept_n; i++) {
		struct ck_eptarget *t = &f->ept[i];
		struct {
			uint32_t efd, tfd, toff;
		} slot = {(uint32_t)t->epdup, (uint32_t)t->rec.tfd, t->toff};
		for (size_t j = 0; j < f->n && !t->rec.target_id; j++)
			if (f->obj[j].ino == t->ino &&
			    syscall(SYS_kcmp, getpid(), getpid(), KCMP_EPOLL_TFD, f->obj[j].dup,
				    &slot) == 0)
				t->rec.target_id = f->obj[j].id;
		if (!t->rec.target_id)
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d fd %d: refused: epoll watches fd %d, whose file no "
			    "process of the tree has open",
			    t->vpid, t->epfd, t->rec.tfd);
		int r = ck_write_section(w, CK_SEC_EPOLL, &t->rec, sizeof(t->rec), NULL, 0, err);
		if (r < 0)
			return r;
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

/* File status flags F_SETFL can set (the rest come from open/pipe2). */
#define CK_SETFL (O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME)

static int pool_fd_of(const struct ckpt_image *img, const struct ck_pool *pool, uint32_t id)
{
	for (size_t i = 0; i < img->files.n; i++)
		if (img->files.v[i].id == id)
			return pool->fd[i];
	return -1;
}

/* The inode of an unlinked file: the one an earlier record of the same
 * (dev, ino) created, or a new O_TMPFILE with the content, owner, mode and
 * times. Returns an fd the caller re-opens with the record's flags. */
static int ghost_inode(const struct ckpt_image *img, const struct ck_pool *pool, size_t i,
		       struct vs_error *err)
{
	const struct ck_file *f = &img->files.v[i];
	bool owner = f->u[3] & CK_FILE_F_OWNER;
	for (size_t k = 0; k < i && owner; k++) {
		const struct ck_file *o = &img->files.v[k];
		if (o->kind == CK_F_REG && o->ghost && (o->u[3] & CK_FILE_F_OWNER) &&
		    o->u[2] == f->u[2] && o->ino == f->ino && pool->fd[k] >= 0)
			return fcntl(pool->fd[k], F_DUPFD_CLOEXEC, 0);
	}
	char dir[CK_PATH];
	snprintf(dir, sizeof(dir), "%s", f->path);
	char *sl = strrchr(dir, '/');
	if (sl && sl != dir)
		*sl = 0;
	else
		snprintf(dir, sizeof(dir), "/");
	int t = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, f->mode & 07777);
	if (t < 0)
		t = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, f->mode & 07777);
	if (t < 0)
		return vs_error_sys(err, errno, "unlinked file %s: O_TMPFILE", f->path);
	int r = write_data(img, CK_D_GHOST, f->id, t, true, err);
	if (r >= 0 && ftruncate(t, (off_t)f->size) < 0)
		r = vs_error_sys(err, errno, "unlinked file %s: size", f->path);
	if (r >= 0 && owner) {
		struct timespec ts[2] = {{f->tv[0], f->tv[1]}, {f->tv[2], f->tv[3]}};
		/* chown first: it clears set-id bits that chmod then sets */
		if (fchown(t, (uid_t)f->u[0], (gid_t)f->u[1]) < 0 ||
		    fchmod(t, f->mode & 07777) < 0 || futimens(t, ts) < 0)
			r = vs_error_sys(err, errno,
					 "unlinked file %s: owner %u:%u, mode %o, times", f->path,
					 (unsigned)f->u[0], (unsigned)f->u[1], f->mode & 07777);
	}
	if (r < 0) {
		close(t);
		return r;
	}
	return t;
}

/* Bind a unix socket to its name. A name that no longer named the socket
 * at dump is unlinked again, and a file that took it since is kept. */
static int ux_bind(const struct ck_file *f, int fd, const struct sockaddr_un *sa, socklen_t sl,
		   struct vs_error *err)
{
	const char *path = sa->sun_path;
	bool gone = f->u[0] & CK_UX_F_NAME_GONE;
	char aside[sizeof(sa->sun_path) + 32] = "";
	struct stat st;
	if (path[0] && gone && lstat(path, &st) == 0) {
		snprintf(aside, sizeof(aside), "%s.vs-ckpt-%d", path, (int)getpid());
		if (rename(path, aside) < 0)
			return vs_error_sys(err, errno,
					    "unix socket %s: move the file now there aside", path);
	} else if (path[0] && !gone && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		unlink(path); /* the dumped socket file, restored with the fs delta */
	}
	if (bind(fd, (const struct sockaddr *)sa, sl) < 0)
		return vs_error_sys(err, errno, "unix socket: bind %s",
				    path[0] ? path : "@abstract");
	return 0; /* a gone name is unlinked by ux_unbind_gone, after the requeue */
}

static int ux_unbind_gone(const struct ck_file *f, struct vs_error *err)
{
	struct sockaddr_un sa;
	socklen_t sl;
	if (f->kind != CK_F_UNIX || !(f->u[0] & CK_UX_F_NAME_GONE) || unix_addr(f, &sa, &sl) < 0 ||
	    !sa.sun_path[0])
		return 0;
	char aside[sizeof(sa.sun_path) + 32];
	snprintf(aside, sizeof(aside), "%s.vs-ckpt-%d", sa.sun_path, (int)getpid());
	struct stat st;
	if (unlink(sa.sun_path) < 0)
		return vs_error_sys(err, errno, "unix socket %s: unlink the name again",
				    sa.sun_path);
	if (lstat(aside, &st) == 0 && rename(aside, sa.sun_path) < 0)
		return vs_error_sys(err, errno, "unix socket %s: put the file back", sa.sun_path);
	return 0;
}

/* Datagrams queued to socket id: sent again from s (to sa when given). */
static bool has_data(const struct ckpt_image *img, uint32_t kind, uint64_t id)
{
	for (size_t i = 0; i < img->data.n; i++)
		if (img->data.v[i].h.kind == kind && img->data.v[i].h.id == id)
			return true;
	return false;
}

static int send_dgrams(const struct ckpt_image *img, uint64_t id, int s,
		       const struct sockaddr_un *sa, socklen_t sl, struct vs_error *err)
{
	for (size_t i = 0; i < img->data.n; i++) {
		const struct ck_data_r *d = &img->data.v[i];
		if (d->h.kind != CK_D_SKDGRAM || d->h.id != id)
			continue;
		ssize_t n = sendto(s, d->data, d->h.len, MSG_NOSIGNAL | MSG_DONTWAIT,
				   (const struct sockaddr *)sa, sa ? sl : 0);
		if (n != (ssize_t)d->h.len)
			return vs_error_sys(err, n < 0 ? errno : EIO,
					    "unix socket %" PRIu64 ": requeue a datagram", id);
	}
	return 0;
}

/* Register target (a pool fd) in epoll ep under the fd number it was added
 * with: the kernel keys a registration by (file, fd number), and that
 * number may be closed or hold another file by now. Whatever the stub has
 * at that number is moved away meanwhile. */
static int epoll_add_as(int ep, int target, const struct ck_epoll *e, int base,
			struct vs_error *err)
{
	int saved = -1, saved_fl = fcntl(e->tfd, F_GETFD);
	if (saved_fl >= 0 && (saved = fcntl(e->tfd, F_DUPFD_CLOEXEC, base)) < 0)
		return vs_error_sys(err, errno, "epoll: free fd %d", e->tfd);
	int r = 0;
	struct epoll_event ev = {.events = e->events, .data.u64 = e->data};
	if (dup2(target, e->tfd) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, e->tfd, &ev) < 0)
		r = vs_error_sys(err, errno, "epoll file %u: add file %u as fd %d", e->file_id,
				 e->target_id, e->tfd);
	if (saved >= 0) {
		dup3(saved, e->tfd, (saved_fl & FD_CLOEXEC) ? O_CLOEXEC : 0);
		close(saved);
	} else {
		close(e->tfd);
	}
	return r;
}

static int take_lock(int fd, const struct ck_lock *l, struct vs_error *err)
{
	int rc;
	if (l->kind == CK_LOCK_FLOCK) {
		rc = flock(fd, (l->type == F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB);
	} else {
		struct flock fl = {.l_type = (short)l->type,
				   .l_whence = SEEK_SET,
				   .l_start = l->start,
				   .l_len = l->len};
		rc = fcntl(fd, l->kind == CK_LOCK_OFD ? F_OFD_SETLK : F_SETLK, &fl);
	}
	if (rc < 0)
		return vs_error_sys(err, errno, "%s %s lock on file %u at %" PRId64 "+%" PRId64,
				    l->kind == CK_LOCK_FLOCK ? "flock"
				    : l->kind == CK_LOCK_OFD ? "OFD"
							     : "POSIX",
				    l->type == F_RDLCK ? "read" : "write", l->file_id, l->start,
				    l->len);
	return 0;
}

/* Re-add the watches of inotify file f to fd with their old descriptors:
 * the kernel hands out the next number after the last one, so numbers
 * below a watch's own are used up by adding and removing it again. The
 * IN_IGNORED events that leaves behind are read away. */
static int inotify_rewatch(const struct ckpt_image *img, const struct ck_file *f, int fd,
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

static int tcp_send_all(int s, const uint8_t *p, uint32_t len)
{
	while (len) {
		ssize_t n = send(s, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n <= 0)
			return -1;
		p += n;
		len -= (uint32_t)n;
	}
	return 0;
}

static const uint8_t *tcp_data(const struct ckpt_image *img, uint32_t kind, uint32_t id,
			       uint32_t len)
{
	for (size_t i = 0; i < img->data.n; i++) {
		const struct ck_data_r *d = &img->data.v[i];
		if (d->h.kind == kind && d->h.id == id && d->h.len == len && d->h.off == 0)
			return d->data;
	}
	return NULL;
}

/* An established connection, rebuilt in repair mode on a socket s that has
 * its options (libsoccr's order): queue sequence numbers, bind, connect
 * (no SYN in repair mode), negotiated options, timestamp, the received
 * bytes, window, the sent-but-unacknowledged bytes; then repair off and
 * the never-sent bytes sent as usual. */
static int tcp_conn_restore(const struct ckpt_image *img, const struct ck_inet *n, int s,
			    struct vs_error *err)
{
	const uint8_t *sndq = tcp_data(img, CK_D_TCP_SEND, n->file_id, n->outq_len);
	const uint8_t *rcvq = tcp_data(img, CK_D_TCP_RECV, n->file_id, n->inq_len);
	if ((n->outq_len && !sndq) || (n->inq_len && !rcvq) || !n->local_len || !n->peer_len)
		return vs_error_set(err, EINVAL,
				    "TCP connection of file %u: queues or addresses "
				    "missing",
				    n->file_id);
	int on = 1, q;
	uint32_t seq;
	struct tcp_repair_opt opts[4];
	int nopt = 0;
	opts[nopt++] = (struct tcp_repair_opt){TCPOPT_MAXSEG, n->mss};
	if (n->tcpi_options & TCPI_OPT_WSCALE)
		opts[nopt++] =
		    (struct tcp_repair_opt){TCPOPT_WINDOW, n->snd_wscale | (n->rcv_wscale << 16)};
	if (n->tcpi_options & TCPI_OPT_SACK)
		opts[nopt++] = (struct tcp_repair_opt){TCPOPT_SACK_PERMITTED, 0};
	if (n->tcpi_options & TCPI_OPT_TIMESTAMPS)
		opts[nopt++] = (struct tcp_repair_opt){TCPOPT_TIMESTAMP, 0};
	const char *step = "TCP_REPAIR";
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
		goto fail;
	step = "receive queue sequence";
	q = TCP_RECV_QUEUE;
	seq = n->rcv_seq - n->inq_len;
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
	    setsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq)) < 0)
		goto fail;
	step = "send queue sequence";
	q = TCP_SEND_QUEUE;
	seq = n->snd_seq - n->outq_len;
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
	    setsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq)) < 0)
		goto fail;
	step = "bind";
	if (bind(s, (const struct sockaddr *)n->local, n->local_len) < 0)
		goto fail;
	step = "connect";
	if (connect(s, (const struct sockaddr *)n->peer, n->peer_len) < 0)
		goto fail;
	step = "options";
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts,
		       (socklen_t)(nopt * sizeof(opts[0]))) < 0)
		goto fail;
	step = "timestamp";
	if ((n->tcpi_options & TCPI_OPT_TIMESTAMPS) &&
	    setsockopt(s, IPPROTO_TCP, TCP_TIMESTAMP, &n->timestamp, sizeof(n->timestamp)) < 0)
		goto fail;
	step = "receive queue";
	q = TCP_RECV_QUEUE;
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
	    tcp_send_all(s, rcvq, n->inq_len) < 0)
		goto fail;
	/* after the receive queue: the window's rcv_wup may not lie beyond
	 * rcv_nxt, which the queued bytes advance to where it was */
	step = "window";
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, n->window, sizeof(n->window)) < 0)
		goto fail;
	step = "send queue";
	q = TCP_SEND_QUEUE;
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
	    tcp_send_all(s, sndq, n->outq_len - n->unsent_len) < 0)
		goto fail;
	return 0; /* repair off: tcp_conn_resume, once the other end exists too */
fail:
	return vs_error_sys(err, errno, "TCP connection of file %u: %s", n->file_id, step);
}

/* Every socket of the pool exists: connections leave repair mode (a
 * window probe from one whose peer is not there yet would be answered
 * with a reset) and send the bytes they had not sent. */
static int tcp_conn_resume(const struct ckpt_image *img, const struct ck_pool *pool,
			   struct vs_error *err)
{
	for (size_t i = 0; i < img->inets.n; i++) {
		const struct ck_inet *n = &img->inets.v[i];
		if (n->type != SOCK_STREAM || n->state != TCP_ESTABLISHED)
			continue;
		int s = pool_fd_of(img, pool, n->file_id), q = TCP_NO_QUEUE, off = 0;
		const uint8_t *sndq = tcp_data(img, CK_D_TCP_SEND, n->file_id, n->outq_len);
		if (s < 0 || setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
		    setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) < 0)
			return vs_error_sys(err, errno, "TCP connection of file %u: repair off",
					    n->file_id);
		if (n->unsent_len &&
		    tcp_send_all(s, sndq + (n->outq_len - n->unsent_len), n->unsent_len) < 0)
			return vs_error_sys(err, errno, "TCP connection of file %u: send %u bytes",
					    n->file_id, n->unsent_len);
	}
	return 0;
}

/* A TCP/UDP socket again: options that differ from a new socket's (before
 * bind: IPV6_V6ONLY, SO_REUSEPORT), bind - through IP_FREEBIND when the
 * address is not (yet) configured in the new namespace -, listen, connect. */
static int inet_create(const struct ckpt_image *img, const struct ck_file *f, struct vs_error *err)
{
	const struct ck_inet *n = NULL;
	for (size_t i = 0; i < img->inets.n && !n; i++)
		if (img->inets.v[i].file_id == f->id)
			n = &img->inets.v[i];
	if (!n)
		return vs_error_set(err, EINVAL, "socket file %u: no inet record", f->id);
	int s = socket(n->family, n->type, n->protocol);
	if (s < 0)
		return vs_error_sys(err, errno, "socket(%d, %d, %d)", n->family, n->type,
				    n->protocol);
	int r = 0;
	for (uint32_t i = 0; i < n->nopts && r >= 0; i++) {
		const struct ck_sockopt *o = &n->opt[i];
		int cur = 0, v = o->value;
		socklen_t l = sizeof(cur);
		if (getsockopt(s, o->level, o->name, &cur, &l) == 0 && cur == v)
			continue;
		if (o->level == SOL_SOCKET && (o->name == SO_RCVBUF || o->name == SO_SNDBUF))
			v /= 2; /* the kernel doubles what it is given */
		if (setsockopt(s, o->level, o->name, &v, sizeof(v)) < 0)
			r = vs_error_sys(err, errno, "socket option %d/%d = %d", o->level, o->name,
					 o->value);
	}
	if (r >= 0 && n->type == SOCK_STREAM && n->state == TCP_ESTABLISHED) {
		r = tcp_conn_restore(img, n, s, err);
		if (r < 0) {
			close(s);
			return r;
		}
		return s;
	}
	if (r >= 0 && n->local_len &&
	    bind(s, (const struct sockaddr *)n->local, n->local_len) < 0) {
		int lvl = n->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
		int name = n->family == AF_INET ? IP_FREEBIND : IPV6_FREEBIND, on = 1, was = 0;
		socklen_t l = sizeof(was);
		getsockopt(s, lvl, name, &was, &l);
		if (errno != EADDRNOTAVAIL || setsockopt(s, lvl, name, &on, sizeof(on)) < 0 ||
		    bind(s, (const struct sockaddr *)n->local, n->local_len) < 0 ||
		    setsockopt(s, lvl, name, &was, sizeof(was)) < 0)
			r = vs_error_sys(err, errno, "bind the socket of file %u", f->id);
	}
	if (r >= 0 && n->state == TCP_LISTEN && n->type == SOCK_STREAM &&
	    listen(s, (int)n->backlog) < 0)
		r = vs_error_sys(err, errno, "listen on the socket of file %u", f->id);
	if (r >= 0 && n->peer_len && connect(s, (const struct sockaddr *)n->peer, n->peer_len) < 0)
		r = vs_error_sys(err, errno, "connect the UDP socket of file %u", f->id);
	if (r < 0) {
		close(s);
		return r;
	}
	return s;
}

int ck_pool_locks(const struct ckpt_image *img, pid_t pid, struct vs_error *err)
{
	for (size_t i = 0; i < img->locks.n; i++) {
		const struct ck_lock *l = &img->locks.v[i];
		if (l->kind != CK_LOCK_POSIX || l->pid != pid)
			continue;
		int r = take_lock(l->fd, l, err);
		if (r < 0)
			return vs_error_wrap(err, "pid %d fd %d", pid, l->fd);
	}
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
				int t = ghost_inode(img, pool, i, err);
				if (t < 0) {
					r = t;
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
			int p[2];
			if (pipe2(p, 0) < 0) {
				r = vs_error_sys(err, errno, "pipe");
				break;
			}
			if (f->pipe_size)
				fcntl(p[1], F_SETPIPE_SZ, (int)f->pipe_size);
			/* a packet-mode writer: each data record was one packet */
			for (size_t k = 0; k < nf; k++) {
				const struct ck_file *o = &img->files.v[k];
				if (o->kind == CK_F_PIPE && o->ino == f->ino &&
				    (o->flags & O_ACCMODE) != O_RDONLY && (o->flags & O_DIRECT))
					fcntl(p[1], F_SETFL, O_DIRECT);
			}
			/* the data record belongs to whichever end was dumped first */
			for (size_t k = 0; k < nf; k++) {
				const struct ck_file *o = &img->files.v[k];
				if (o->kind == CK_F_PIPE && o->ino == f->ino &&
				    (r = write_data(img, CK_D_PIPE, o->id, p[1], false, err)) < 0)
					break;
			}
			/* Every open file of this pipe, each with its own flags:
			 * the ends pipe2 made, and re-opens (/proc/PID/fd/N, which
			 * adds O_LARGEFILE) as new open files of the same pipe. */
			bool used[2] = {false, false};
			for (size_t j = i; j < nf && r >= 0; j++) {
				const struct ck_file *o = &img->files.v[j];
				if (o->kind != CK_F_PIPE || o->ino != f->ino)
					continue;
				int end = (o->flags & O_ACCMODE) == O_RDONLY ? 0 : 1, nfd;
				if (!used[end] && !(o->flags & O_LARGEFILE)) {
					nfd = dup(p[end]);
					used[end] = true;
				} else {
					char path[64];
					snprintf(path, sizeof(path), "/proc/self/fd/%d", p[end]);
					nfd = open(path, (end ? O_WRONLY : O_RDONLY) | O_NONBLOCK);
				}
				if (nfd < 0 || fcntl(nfd, F_SETFL, o->flags & CK_SETFL) < 0)
					r = vs_error_sys(err, errno, "pipe %" PRIu64 ": file %u",
							 f->ino, o->id);
				else if ((pool->fd[j] = to_pool(nfd, base)) < 0)
					r = vs_error_sys(err, errno, "file %u: move above fd %d",
							 o->id, base);
			}
			close(p[0]);
			close(p[1]);
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
			if (peer && peer != f && peer->peer_ino == f->ino) {
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
				fcntl(pool->fd[j], F_SETFL, peer->flags & CK_SETFL);
			} else {
				fd = socket(AF_UNIX, type, 0);
				if (fd < 0) {
					r = vs_error_sys(err, errno, "socket");
					break;
				}
				struct sockaddr_un sa;
				socklen_t sl;
				if (unix_addr(f, &sa, &sl) == 0 &&
				    (r = ux_bind(f, fd, &sa, sl, err)) < 0)
					break;
				if (f->sk_state == 10 &&
				    listen(fd, f->sk_backlog ? (int)f->sk_backlog : 128) < 0) {
					r = vs_error_sys(err, errno, "unix socket: listen");
					break;
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
			/* an older writer recorded an expired repeating timer as
			 * remaining 0: it is due again one interval on */
			if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
				its.it_value = its.it_interval;
			if ((its.it_value.tv_sec || its.it_value.tv_nsec) &&
			    timerfd_settime(fd, 0, &its, NULL) < 0) {
				r = vs_error_sys(err, errno, "timerfd_settime");
				break;
			}
			if (f->u[1] && ioctl(fd, TFD_IOC_SET_TICKS, &f->u[1]) < 0) {
				r = vs_error_sys(err, errno, "timerfd: set %" PRIu64 " ticks",
						 f->u[1]);
				break;
			}
			break;
		}
		case CK_F_INET:
			fd = inet_create(img, f, err);
			if (fd < 0)
				r = fd;
			break;
		case CK_F_INOTIFY:
			fd = inotify_init1(0);
			if (fd >= 0 && (r = inotify_rewatch(img, f, fd, err)) < 0)
				close(fd);
			break;
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
		if (f->kind == CK_F_PIPE)
			continue; /* every record of the pipe is in place */
		if (fd < 0) {
			r = vs_error_sys(err, errno, "restore file %u (%s)", f->id,
					 f->path[0] ? f->path : "anonymous");
			break;
		}
		if (f->kind != CK_F_REG && f->kind != CK_F_DIR && f->kind != CK_F_FIFO)
			fcntl(fd, F_SETFL, fl & CK_SETFL);
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
		if (!peer || (peer != f && peer->peer_ino == f->ino))
			continue; /* none, or a pair; self-connected ones connect to themselves */
		struct sockaddr_un sa;
		socklen_t sl;
		if (unix_addr(peer, &sa, &sl) == 0 &&
		    connect(pool->fd[i], (struct sockaddr *)&sa, sl) < 0)
			r = vs_error_sys(err, errno, "unix dgram socket: connect");
	}
	/* datagrams queued to bound, unpaired sockets: send them again by
	 * name - from the socket it is connected to, if any (a connected
	 * socket takes datagrams from its peer only), else from a new one */
	for (size_t i = 0; i < nf && r >= 0; i++) {
		const struct ck_file *f = &img->files.v[i];
		size_t j = 0;
		const struct ck_file *peer =
		    f->peer_ino ? file_by_ino(img, CK_F_UNIX, f->peer_ino, &j) : NULL;
		if (f->kind != CK_F_UNIX || f->sk_type == SOCK_STREAM ||
		    (peer && peer != f && peer->peer_ino == f->ino))
			continue;
		struct sockaddr_un sa;
		socklen_t sl;
		if (unix_addr(f, &sa, &sl) < 0 || !has_data(img, CK_D_SKDGRAM, f->id))
			continue;
		if (peer) {
			r = send_dgrams(img, f->id, pool->fd[j], &sa, sl, err);
			continue;
		}
		int s = socket(AF_UNIX, (int)f->sk_type, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&sa, sl) < 0)
			r = vs_error_sys(err, errno, "requeue datagrams");
		else
			r = send_dgrams(img, f->id, s, NULL, 0, err);
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
	for (size_t i = 0; i < nf && r >= 0; i++)
		r = ux_unbind_gone(&img->files.v[i], err);
	/* epoll targets, by the file they watch (writers that recorded it) */
	for (size_t i = 0; i < img->epolls.n && r >= 0; i++) {
		const struct ck_epoll *e = &img->epolls.v[i];
		if (!e->target_id)
			continue;
		int ep = pool_fd_of(img, pool, e->file_id),
		    tg = pool_fd_of(img, pool, e->target_id);
		if (ep < 0 || tg < 0 || e->tfd >= base)
			r = vs_error_set(err, EINVAL, "epoll file %u: target file %u as fd %d",
					 e->file_id, e->target_id, e->tfd);
		else
			r = epoll_add_as(ep, tg, e, base, err);
	}
	if (r >= 0)
		r = tcp_conn_resume(img, pool, err);
	/* OFD and flock locks belong to the open file: taken on the pool's */
	for (size_t i = 0; i < img->locks.n && r >= 0; i++) {
		const struct ck_lock *l = &img->locks.v[i];
		if (l->kind != CK_LOCK_POSIX)
			r = take_lock(pool_fd_of(img, pool, l->file_id), l, err);
	}
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
		if (epfd < 0 || !ef || ef->owner_pid != pid || e->target_id)
			continue; /* targets with a file id are added by ck_pool_create */
		struct epoll_event ev = {.events = e->events, .data.u64 = e->data};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->tfd, &ev) < 0)
			return vs_error_sys(err, errno, "pid %d: epoll fd %d: add target fd %d",
					    pid, epfd, e->tfd);
	}
	return 0;
}

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
 * Epoll targets are resolved to files with kcmp(KCMP_EPOLL_TFD); checks
 * that need the whole tree look at every process of its pid namespace.
 * Helpers by concern: locks.c, inotify.c, inet.c (TCP/UDP), sysvipc.c.
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
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
	free(f->sysv_maps);
	free(f->ept); /* epdup is an obj's dup, closed above */
	memset(f, 0, sizeof(*f));
}

int ck_getfd(pid_t hpid, int fd)
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
		int d = ck_getfd(hpid, fd);
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
	if (ck_memfd_is(link, st)) {
		*kind = CK_F_MEMFD; /* dump_file tells a deleted "/memfd:x" file apart */
		return 0;
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
int ck_ns_child(pid_t hpid, int (*fn)(int sock), int *fd_out, int *code)
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
	if (fd_out)
		*fd_out = vs_recv_fd(sv[0], 0);
	close(sv[0]);
	int status;
	while (waitpid(c, &status, 0) < 0 && errno == EINTR)
		;
	*code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
	return 0;
}

/* Exit code: 1 if a SysV shared memory segment of the reader's ipc
 * namespace was removed (IPC_RMID: SHM_DEST in perms, the 3rd column of
 * /proc/sysvipc/shm) but is still attached. */
static int sysvipc_probe(int sock)
{
	cleanup_fclose FILE *f = fopen("/proc/sysvipc/shm", "re");
	char line[512];
	if (f && !fgets(line, sizeof(line), f))
		return 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned perms = 0;
		if (sscanf(line, "%*d %*d %o", &perms) == 1 && (perms & SHM_DEST))
			return 1;
	}
	return 0;
}

/* Exit code 1 if the reader's ipc namespace has SysV semaphore sets. */
static int sem_probe(int sock)
{
	cleanup_fclose FILE *f = fopen("/proc/sysvipc/sem", "re");
	char line[512];
	int lines = 0;
	while (f && fgets(line, sizeof(line), f))
		lines++;
	return lines > 1 ? 1 : 0;
}

int ck_files_check_ns(pid_t hpid, struct vs_error *err)
{
	int code;
	int r = ck_ns_child(hpid, sysvipc_probe, NULL, &code);
	if (r < 0)
		return vs_error_sys(err, -r, "pid %d: probe ipc namespace", hpid);
	if (code == 100)
		return vs_error_set(err, EPERM, "pid %d: cannot join its namespaces", hpid);
	if (code)
		return vs_error_set(err, ENOTSUP,
				    "refused: a SysV shared memory segment of the tree's ipc "
				    "namespace was removed (IPC_RMID) but is still attached");
	return 0;
}

int ck_send_fd(int sock, int fd)
{
	return vs_send_fd(sock, fd, 0) == 0 ? 0 : -1;
}

static int diag_sock(int sock)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return 1;
	return ck_send_fd(sock, fd) == 0 ? 0 : 1;
}

static int load_unix_diag(struct ck_files *f, pid_t hpid, struct vs_error *err)
{
	if (f->ux_loaded)
		return 0;
	int nl = -1, code;
	int r = ck_ns_child(hpid, diag_sock, &nl, &code);
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

int ck_put_data(struct ck_writer *w, uint32_t kind, uint64_t id, uint64_t off, const void *p,
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
				r = ck_put_data(w, CK_D_PIPE, id, (uint64_t)off, buf, (size_t)got,
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
			r = ck_put_data(w, CK_D_SKQUEUE, id, pos, buf, (size_t)n, err);
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
			r = ck_put_data(w, CK_D_SKDGRAM, id, (uint64_t)i, buf, (size_t)n, err);
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
bool ck_ns_id(pid_t hpid, const char *map, uint32_t id, uint64_t *out)
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
	if (same) {
		/* The restore binds it anew (as the slice's root): keep the
		 * file's owner and mode, or a non-root server's clients get
		 * EACCES on a root-owned socket. */
		uint64_t uid, gid;
		if (ck_ns_id(hpid, "uid_map", st.st_uid, &uid) &&
		    ck_ns_id(hpid, "gid_map", st.st_gid, &gid)) {
			cf->u[0] |= CK_UX_F_OWNER;
			cf->u[1] = uid;
			cf->u[2] = gid;
			cf->u[3] = st.st_mode & 07777;
		}
		return 0;
	}
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

/* An unlinked regular file: owner, mode, times; content once per inode. */
static int dump_ghost(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		      int dup, const struct stat *st, struct ck_file *cf, struct vs_error *err)
{
	cf->ghost = 1;
	if (!ck_ns_id(hpid, "uid_map", st->st_uid, &cf->u[0]) ||
	    !ck_ns_id(hpid, "gid_map", st->st_gid, &cf->u[1]))
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
		r = ck_put_data(w, CK_D_GHOST, cf->id, (uint64_t)o, buf, (size_t)n, err);
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

/* A memfd lives on the kernel's internal shm mount; a deleted file of the
 * tree that was named "/memfd:..." is on one of the tree's mounts. */
static uint32_t memfd_or_file(pid_t hpid, uint32_t kind, const char *info)
{
	const char *v;
	if (kind == CK_F_MEMFD && (v = fdinfo_val(info, "mnt_id:")) && mnt_visible(hpid, atoi(v)))
		return CK_F_REG;
	return kind;
}

static int dump_file(struct ck_files *f, struct ck_writer *w, pid_t hpid, pid_t vpid, int fd,
		     int dup, uint32_t kind, const char *link, const struct stat *st,
		     const char *info, struct ck_file *cf, struct vs_error *err)
{
	const char *v;
	kind = memfd_or_file(hpid, kind, info);
	cf->kind = kind;
	cf->mode = st->st_mode;
	cf->ino = st->st_ino;
	cf->rdev = st->st_rdev;
	cf->size = st->st_size;
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
	case CK_F_MEMFD:
		r = ck_memfd_dump(f, w, hpid, dup, link, st, cf, err);
		break;
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
		r = ck_inotify_dump(w, hpid, vpid, fd, dup, cf->id, info, err);
		break;
	case CK_F_INET:
		r = ck_inet_dump(w, hpid, dup, cf->id, err);
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
			int dup = ck_getfd(hpid, fd);
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
		r = ck_locks_dump(f, w, hpid, vpid, fd, id, new_file, &st, info, err);
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

/* Does a process in hpid's pid namespace (not its PID 1: the slice's own
 * reaper) have an fd for which match(pid, fd, arg) holds? */
bool ck_tree_fd_any(pid_t hpid, bool (*match)(pid_t pid, int fd, void *arg), void *arg)
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
	if (!ck_tree_fd_any(hpid, sock_match, &peer))
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
		if (!ck_tree_fd_any(hpid, ep_match, &q))
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
	 * read. A task has a list once it used SEM_UNDO - or made a thread
	 * (CLONE_SYSVSEM shares one) -, and entries only while semaphore
	 * sets exist: refuse a task with a list if there are sets. */
	long undo = syscall(SYS_kcmp, getpid(), hpid, KCMP_SYSVSEM, 0, 0);
	if (undo < 0)
		return vs_error_sys(err, errno, "pid %d: kcmp(KCMP_SYSVSEM)", vpid);
	int sets = 0;
	if (undo != 0 && ck_ns_child(hpid, sem_probe, NULL, &sets) < 0)
		return vs_error_set(err, EIO, "pid %d: probe its ipc namespace", vpid);
	if (undo != 0 && sets == 1)
		return vs_error_set(err, ENOTSUP,
				    "pid %d: refused: it may hold SysV semaphore undo state "
				    "(SEM_UNDO), which cannot be read",
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
			continue; /* gone meanwhile: the stopped check sees it */
		uint32_t kind;
		r = classify(hpid, vpid, fd, link, &st, &kind, err);
		if (r < 0 || read_fdinfo(hpid, fd, info, sizeof(info)) < 0)
			continue; /* gone meanwhile: the stopped check sees it */
		kind = memfd_or_file(hpid, kind, info);
		r = ck_locks_dump(NULL, NULL, hpid, vpid, fd, 0, true, &st, info, err);
		if (r >= 0 && kind == CK_F_EPOLL)
			r = check_epoll(hpid, vpid, fd, info, err);
		if (r >= 0 && (kind == CK_F_INOTIFY || kind == CK_F_INET || kind == CK_F_MEMFD)) {
			int dup = ck_getfd(hpid, fd);
			if (dup < 0) {
				r = vs_error_sys(err, -dup, "pid %d fd %d: pidfd_getfd", vpid, fd);
			} else {
				struct ck_file cf = {0};
				r = kind == CK_F_INET ? ck_inet_dump(NULL, hpid, dup, 0, err)
				    : kind == CK_F_MEMFD
					? ck_memfd_dump(NULL, NULL, hpid, dup, link, &st, &cf, err)
					: ck_inotify_dump(NULL, hpid, vpid, fd, dup, 0, info, err);
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
			r = ck_sysv_dump(f, f->ns_hpid, w, err);
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

int ck_pool_fd_of(const struct ckpt_image *img, const struct ck_pool *pool, uint32_t id)
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
	if (path[0] && (f->u[0] & CK_UX_F_OWNER) &&
	    (fchownat(AT_FDCWD, path, (uid_t)f->u[1], (gid_t)f->u[2], AT_SYMLINK_NOFOLLOW) < 0 ||
	     fchmodat(AT_FDCWD, path, (mode_t)(f->u[3] & 07777), 0) < 0))
		return vs_error_sys(err, errno, "unix socket %s: restore owner and mode", path);
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
	/* shared memory objects first: memfd records open them */
	int r = ck_memfd_pool(img, pool, err);
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
		case CK_F_MEMFD:
			fd = ck_memfd_open(pool, f, fl, err);
			if (fd < 0)
				r = fd;
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
			fd = ck_inet_create(img, f, err);
			if (fd < 0)
				r = fd;
			break;
		case CK_F_INOTIFY:
			fd = inotify_init1(0);
			if (fd >= 0 && (r = ck_inotify_rewatch(img, f, fd, err)) < 0)
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
	for (size_t i = 0; i < nf && r >= 0; i++)
		r = ux_unbind_gone(&img->files.v[i], err);
	/* epoll targets, by the file they watch (writers that recorded it) */
	for (size_t i = 0; i < img->epolls.n && r >= 0; i++) {
		const struct ck_epoll *e = &img->epolls.v[i];
		if (!e->target_id)
			continue;
		int ep = ck_pool_fd_of(img, pool, e->file_id),
		    tg = ck_pool_fd_of(img, pool, e->target_id);
		if (ep < 0 || tg < 0 || e->tfd >= base)
			r = vs_error_set(err, EINVAL, "epoll file %u: target file %u as fd %d",
					 e->file_id, e->target_id, e->tfd);
		else
			r = epoll_add_as(ep, tg, e, base, err);
	}
	if (r >= 0)
		r = ck_inet_resume(img, pool, err);
	/* OFD and flock locks belong to the open file: taken on the pool's */
	for (size_t i = 0; i < img->locks.n && r >= 0; i++) {
		const struct ck_lock *l = &img->locks.v[i];
		if (l->kind != CK_LOCK_POSIX)
			r = ck_lock_take(ck_pool_fd_of(img, pool, l->file_id), l, err);
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

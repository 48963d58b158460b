/*
 * sliver.c - spawning a sliver and entering a running one.
 *
 * The security-relevant order lives here, in one place:
 *   launcher (host root): cgroup -> user ns + id map [--net bridge: with
 *   the net ns (owned by that user ns), MSG_NET_READY as soon as it exists
 *   (the caller makes the veth and sets lo, eth0 and the route meanwhile),
 *   joined] -> private mount ns -> [--disk: loop-mounted image for
 *   upper/work (disk.c)] -> id-mapped image + overlay (rootfs.c) [--net
 *   bridge: MSG_ROOTFS_READY, the caller writes /etc files through the root
 *   we hold open] -> setns(userns) -> slice root -> unshare the rest ->
 *   time offsets -> hostname -> [--net none: lo up] -> [--net bridge:
 *   barrier: the caller's answer, '1' once all of it is done] -> fork P1.
 *   (The caller's lease, bridge and nft elements, net_begin, run from the
 *   launcher's fork on.)
 *   P1 (init.c): rootfs_enter -> reaper; workload: caps -> NNP -> seccomp -> exec.
 * The launcher and P1 are non-dumpable: nothing in the slice can ptrace them
 * or open their /proc files while they still hold host resources.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/sched.h>

#include "sliver_internal.h"
#include "vslice/trace.h"
#include "vslice/util.h"

void sliver_send(int fd, int kind, int code, const char *text)
{
	if (fd < 0)
		return;
	struct sliver_msg m = {.kind = kind, .code = code};
	if (text)
		snprintf(m.text, sizeof(m.text), "%s", text);
	(void)vs_write_all(fd, &m, sizeof(m));
}

/* --net bridge: a NETLINK_ROUTE socket made in the slice's network
 * namespace, for the caller (its answer to MSG_NET_READY sets lo, eth0 and
 * the route through it: no thread of its own has to enter the namespace),
 * on the ack socket just before MSG_NET_READY: one byte, the socket as
 * SCM_RIGHTS (none if it could not be made: the caller then makes its own).
 * Made by us, here, while host root or the root of the slice's user
 * namespace, which owns the network namespace. */
static void net_sock_send(int ack)
{
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	(void)vs_send_fd(ack, nl, MSG_NOSIGNAL);
	if (nl >= 0)
		close(nl);
}

/* The caller's side of net_sock_send: the socket, or -1. Never waits: the
 * launcher sent it before MSG_NET_READY, so it is queued by the time that
 * message is read (a launcher whose send failed leaves -1, not a caller
 * waiting for it while it waits for the caller). */
static int net_sock_recv(int ack)
{
	return vs_recv_fd(ack, MSG_DONTWAIT);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

void close_fds_except(const int *keep, size_t n)
{
	int sorted[32];
	size_t m = 0;
	for (size_t i = 0; i < n && m < VS_ARRAY_SIZE(sorted); i++)
		if (keep[i] >= 0)
			sorted[m++] = keep[i];
	qsort(sorted, m, sizeof(int), cmp_int);
	unsigned int from = 0;
	for (size_t i = 0; i < m; i++) {
		if ((unsigned)sorted[i] > from)
			close_range(from, (unsigned)sorted[i] - 1, 0);
		from = (unsigned)sorted[i] + 1;
	}
	close_range(from, ~0U, 0);
}

uint64_t sliver_proc_starttime(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may hold spaces and ')': fields restart after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* p + 1 is the space before field 3 (state); walk to the one before 22. */
	p++;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

int sliver_read_exit(int fd, int *code, char *reason, size_t reason_len, unsigned *restarts,
		     time_t *finished)
{
	char buf[128];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	int c;
	char rs[32];
	unsigned rst;
	long long fin;
	if (sscanf(buf, "%d %31s %u %lld", &c, rs, &rst, &fin) != 4 || c < 0 || c > 255)
		return -EINVAL;
	*code = c;
	snprintf(reason, reason_len, "%s", rs);
	*restarts = rst;
	*finished = (time_t)fin;
	return 0;
}

/* The workload's exec (or its workdir) failed: set err from the message,
 * with the kind that tells callers 127 (not found) from 126 (denied). */
static int exec_failure(struct vs_error *err, const struct sliver_msg *m)
{
	int r = vs_error_set(err, m->code == 127 ? ENOENT : EACCES, "%s", m->text);
	if (m->kind != MSG_EXEC_FAILED)
		return r;
	return vs_error_kind(err, m->code == 127 ? VS_EK_EXEC_NOT_FOUND : VS_EK_EXEC_DENIED);
}

/*
 * fork(), but on cgroup v2 straight into the slice's cgroup with
 * clone3(CLONE_INTO_CGROUP): no later write to cgroup.procs, which costs an
 * RCU grace period (the cgroup_threadgroup_rwsem write lock). *entered says
 * whether the child is already in place; otherwise it calls cgroup_enter_self.
 */
static pid_t fork_into_cgroup(struct cgroup *cg, bool *entered)
{
	struct vs_error ignore;
	*entered = false;
	int dfd = cgroup_dirfd(cg, &ignore);
	if (dfd >= 0) {
		struct clone_args ca = {
		    .flags = CLONE_INTO_CGROUP,
		    .exit_signal = SIGCHLD,
		    .cgroup = (uint64_t)dfd,
		};
		pid_t p = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
		int e = errno;
		if (p != 0)
			close(dfd);
		if (p >= 0) {
			*entered = true;
			return p;
		}
		errno = e; /* EINVAL/ENOSYS/EBUSY...: fall back to fork + attach */
	}
	return fork();
}

/* A user namespace mapping 0..count-1 to base..: made by a short-lived child
 * that unshares it; we keep a handle to the namespace, not the child. */
int sliver_make_userns_net(uint32_t base, uint32_t count, int *netns, int ready_fd, int ack_fd,
			   struct vs_error *err)
{
	if (netns)
		*netns = -1;
	int go[2], ready[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	if (pipe2(ready, O_CLOEXEC) < 0) {
		int e = errno;
		close(go[0]);
		close(go[1]);
		return vs_error_sys(err, e, "pipe");
	}
	pid_t u = fork();
	if (u < 0) {
		int e = errno;
		close(go[0]);
		close(go[1]);
		close(ready[0]);
		close(ready[1]);
		return vs_error_sys(err, e, "fork");
	}
	if (u == 0) {
		close(go[1]);
		close(ready[0]);
		/* The network namespace, if asked, belongs to the new user
		 * namespace (the helper has every capability there), as if the
		 * slice's root had made it. */
		char c = unshare(CLONE_NEWUSER) == 0 && (!netns || unshare(CLONE_NEWNET) == 0)
			     ? 'u'
			     : 'e';
		(void)!write(ready[1], &c, 1);
		/* Wait until the parent has the ns fd (EOF when it closes). */
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	int r = 0, nsfd = -1;
	char path[64], map[64], c = 0;
	snprintf(map, sizeof(map), "0 %u %u\n", base, count);
	if (vs_read_all(ready[0], &c, 1) != 1 || c != 'u') {
		r = vs_error_set(err, EPERM, "unshare(user ns%s) refused", netns ? ", net ns" : "");
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", u);
	if ((r = vs_write_str(path, map, err)) < 0)
		goto out;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", u);
	if ((r = vs_write_str(path, map, err)) < 0)
		goto out;
	snprintf(path, sizeof(path), "/proc/%d/ns/user", u);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		r = vs_error_sys(err, errno, "open %s", path);
		goto out;
	}
	if (netns) {
		snprintf(path, sizeof(path), "/proc/%d/ns/net", u);
		*netns = open(path, O_RDONLY | O_CLOEXEC);
		if (*netns < 0)
			r = vs_error_sys(err, errno, "open %s", path);
		else if (ready_fd >= 0) {
			/* The caller makes the veth from here on (through
			 * /proc/<us>/fd/N: the fd stays open until it has
			 * answered), while we reap the helper and go on;
			 * joined now for the socket we hand it. */
			if (setns(*netns, CLONE_NEWNET) < 0) {
				r = vs_error_sys(err, errno, "setns(net ns)");
				goto out;
			}
			net_sock_send(ack_fd);
			sliver_send(ready_fd, MSG_NET_READY, *netns, NULL);
		}
	}
out:
	close(ready[0]);
	close(go[1]);
	waitpid(u, NULL, 0);
	if (r < 0) {
		if (nsfd >= 0)
			close(nsfd);
		if (netns && *netns >= 0) {
			close(*netns);
			*netns = -1;
		}
		return vs_error_wrap(err, "user namespace %u+%u", base, count);
	}
	return nsfd;
}

int sliver_make_userns(uint32_t base, uint32_t count, struct vs_error *err)
{
	return sliver_make_userns_net(base, count, NULL, -1, -1, err);
}

int sliver_become_root(struct vs_error *err)
{
	if (setgroups(0, NULL) < 0)
		return vs_error_sys(err, errno, "setgroups");
	if (setresgid(0, 0, 0) < 0)
		return vs_error_sys(err, errno, "setresgid(0)");
	if (setresuid(0, 0, 0) < 0)
		return vs_error_sys(err, errno, "setresuid(0)");
	return 0;
}

int sliver_loopback_up(struct vs_error *err)
{
	cleanup_close int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return vs_error_sys(err, errno, "socket");
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return vs_error_sys(err, errno, "lo: get flags");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return vs_error_sys(err, errno, "lo: up");
	return 0;
}

/* "sec nsec" with 0 <= nsec < 1e9, as the kernel wants it (also for < 0). */
static void split_ns(int64_t ns, long long *sec, long long *nsec)
{
	*sec = ns / 1000000000;
	*nsec = ns % 1000000000;
	if (*nsec < 0) {
		*nsec += 1000000000;
		(*sec)--;
	}
}

/*
 * fd is /proc/self/timens_offsets opened while still host root (the slice's
 * root cannot open a non-dumpable process's proc files); the write applies to
 * the time namespace our children will get, so it comes after the unshare.
 */
static int set_time_offsets(int fd, int64_t mono, int64_t boot, struct vs_error *err)
{
	if (!mono && !boot)
		return 0;
	char buf[128];
	long long ms, mn, bs, bn;
	split_ns(mono, &ms, &mn);
	split_ns(boot, &bs, &bn);
	int n =
	    snprintf(buf, sizeof(buf), "monotonic %lld %lld\nboottime %lld %lld\n", ms, mn, bs, bn);
	if (fd < 0 || write(fd, buf, (size_t)n) != n) {
		vs_error_sys(err, fd < 0 ? EBADF : errno, "write /proc/self/timens_offsets");
		return vs_error_kind(err, VS_EK_TIMENS);
	}
	return 0;
}

/* The launcher: returns only on failure (err set); on success it has forked
 * P1 and reported its pid. */
static int launcher_run(const struct sliver_config *c, int sfd, int net_ack, bool in_cgroup,
			struct vs_error *err)
{
	int r;
	cleanup_close int timens_fd = -1;
	/* --net bridge: the slice's root as mounted here, held until the
	 * caller has written its /etc files through it (MSG_ROOTFS_READY
	 * names it): our later unshare of the mount namespace drops the one
	 * it was mounted in, and a path looked up there then would miss it. */
	cleanup_close int root_fd = -1;
	/* --net bridge: the slice's network namespace, held open until the
	 * caller has answered MSG_NET_READY (which names this fd). */
	cleanup_close int netns = -1;
	if (c->monotonic_offset_ns || c->boottime_offset_ns) {
		timens_fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (timens_fd < 0) {
			vs_error_sys(err, errno, "open /proc/self/timens_offsets");
			return vs_error_kind(err, VS_EK_TIMENS);
		}
	}
	prctl(PR_SET_DUMPABLE, 0);
	if (c->detach)
		setsid();
	vs_trace("L.begin");
	if (!in_cgroup && (r = cgroup_enter_self(c->cg, err)) < 0)
		return r;
	vs_trace("L.cgroup");
	const struct sliver_pooled *pl = c->pooled;
	bool pooled = pl && pl->fds[POOL_NS_USER] >= 0;
	int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWPID |
		    CLONE_NEWTIME;
	if (!c->host_net)
		flags |= CLONE_NEWNET;
	if (pooled) {
		/* A sandbox from the pool (pool.c): its private mount ns already
		 * holds the id-mapped image and the overlay, its user ns the id
		 * map, its net/ipc/uts namespaces belong to that user ns. The
		 * mount ns first, while still host root (it is owned by ours). */
		if (setns(pl->fds[POOL_NS_MNT], CLONE_NEWNS) < 0)
			return vs_error_sys(err, errno, "setns(pooled mount ns)");
		if (net_ack >= 0 &&
		    (root_fd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			return vs_error_sys(err, errno, "%s", c->rootfs);
		if (setns(pl->fds[POOL_NS_USER], CLONE_NEWUSER) < 0)
			return vs_error_sys(err, errno, "setns(pooled user ns)");
		if ((r = sliver_become_root(err)) < 0)
			return r;
		static const int kinds[][2] = {{POOL_NS_NET, CLONE_NEWNET},
					       {POOL_NS_IPC, CLONE_NEWIPC},
					       {POOL_NS_UTS, CLONE_NEWUTS}};
		for (size_t i = 0; i < VS_ARRAY_SIZE(kinds); i++)
			if (setns(pl->fds[kinds[i][0]], kinds[i][1]) < 0)
				return vs_error_sys(err, errno, "setns(pooled %s ns)",
						    pool_ns_names[kinds[i][0]]);
		flags &= ~(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS);
		/* Joined: P1 and the workload need not hold them. */
		for (int i = 0; i < POOL_NS_COUNT; i++)
			close(pl->fds[i]);
		if (net_ack >= 0) {
			/* -1: the namespace we are in (/proc/<us>/ns/net). */
			net_sock_send(net_ack);
			sliver_send(sfd, MSG_NET_READY, -1, NULL);
			sliver_send(sfd, MSG_ROOTFS_READY, root_fd, NULL);
		}
		vs_trace("L.pooled");
	} else {
		/* --net bridge: the network namespace with the user namespace,
		 * joined at once (host root may; sliver_make_userns_net joins
		 * it) and MSG_NET_READY as soon as it exists: the host
		 * configures it, lo included, while we mount the slice's root.
		 * No netlink or ioctl of ours here: they would wait for the RTNL
		 * lock the host's veth creation holds. */
		cleanup_close int userns =
		    sliver_make_userns_net(c->id_base, c->id_count, net_ack >= 0 ? &netns : NULL,
					   net_ack >= 0 ? sfd : -1, net_ack, err);
		if (userns < 0)
			return userns;
		if (netns >= 0)
			flags &= ~CLONE_NEWNET; /* joined */
		vs_trace("L.userns");
		if (unshare(CLONE_NEWNS) < 0)
			return vs_error_sys(err, errno, "unshare(mount ns)");
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			return vs_error_sys(err, errno, "make / private");
		vs_trace("L.mntns");
		if (c->disk_image && (r = rootfs_mount_disk(c, err)) < 0)
			return r;
		bool idmapped = true;
		if ((r = rootfs_mount_overlay(c, userns, &idmapped, err)) < 0)
			return r;
		vs_trace("L.overlay");
		if (!idmapped)
			sliver_send(sfd, MSG_COPY_FALLBACK, 0, NULL);
		/* The slice's root is mounted: the host writes its /etc files
		 * while we go on. */
		if (net_ack >= 0) {
			root_fd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (root_fd < 0)
				return vs_error_sys(err, errno, "%s", c->rootfs);
			sliver_send(sfd, MSG_ROOTFS_READY, root_fd, NULL);
		}
		if (setns(userns, CLONE_NEWUSER) < 0)
			return vs_error_sys(err, errno, "setns(user ns)");
		if ((r = sliver_become_root(err)) < 0)
			return r;
	}
	if (unshare(flags) < 0)
		return vs_error_sys(err, errno, "unshare(namespaces)");
	vs_trace("L.unshare");
	if ((r = set_time_offsets(timens_fd, c->monotonic_offset_ns, c->boottime_offset_ns, err)) <
	    0)
		return vs_error_wrap(err, "time namespace offsets");
	const char *hn = c->hostname && *c->hostname ? c->hostname : c->name;
	if (sethostname(hn, strlen(hn)) < 0)
		return vs_error_sys(err, errno, "sethostname \"%s\"", hn);
	if (flags & CLONE_NEWNET && (r = sliver_loopback_up(err)) < 0)
		return r;
	if (net_ack >= 0) {
		/* Barrier: the caller's one answer, '1' once the slice's
		 * network is complete (veth, lo, eth0's address and route, the
		 * /etc files). Its error is the one reported. */
		char ok = 0;
		vs_trace("L.barrier");
		if (vs_read_all(net_ack, &ok, 1) != 1 || ok != '1') {
			/* Not an error of ours: the caller reports its own. */
			sliver_send(sfd, MSG_NET_CANCELED, 0, NULL);
			_exit(125);
		}
		vs_trace("L.ack");
		close(net_ack);
		close(root_fd);
		root_fd = -1;
		if (netns >= 0)
			close(netns);
		netns = -1;
	}
	vs_trace("L.netlo");
	pid_t p1 = fork();
	if (p1 < 0)
		return vs_error_sys(err, errno, "fork pid 1");
	if (p1 == 0) {
		struct vs_error e2;
		vs_error_clear(&e2);
		vs_trace("P1.begin");
		if (rootfs_enter(c, &e2) < 0) {
			sliver_send(sfd, MSG_ERROR, e2.code, e2.msg);
			_exit(125);
		}
		init_main(c, sfd);
	}
	sliver_send(sfd, MSG_PID, p1, NULL);
	return 0;
}

/* The answer to the launcher on the ack socket, then closed: MSG_NOSIGNAL,
 * as the launcher may have died meanwhile. */
static void net_answer(int ack[2], char ok)
{
	(void)!send(ack[1], &ok, 1, MSG_NOSIGNAL);
	close(ack[1]);
	ack[1] = -1;
}

/* net_setup on the launcher's network namespace: its fd fd (MSG_NET_READY),
 * or -1: the one it is in. */
static int launcher_net_setup(const struct sliver_config *c, pid_t l, int fd, int nl,
			      struct vs_error *err)
{
	char path[64];
	if (fd >= 0)
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", l, fd);
	else
		snprintf(path, sizeof(path), "/proc/%d/ns/net", l);
	cleanup_close int netns = open(path, O_RDONLY | O_CLOEXEC);
	if (netns < 0)
		return vs_error_sys(err, errno, "the slice's network namespace (%s)", path);
	return c->net_setup(c->net_arg, netns, nl, err);
}

/* net_files on the launcher's fd fd (its slice root, MSG_ROOTFS_READY). */
static int launcher_root_files(const struct sliver_config *c, pid_t l, int fd, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", l, fd);
	int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return vs_error_sys(err, errno, "the slice's root (%s)", path);
	int r = c->net_files(c->net_arg, root, err);
	close(root);
	return r;
}

int sliver_spawn(const struct sliver_config *c, struct sliver_result *res, struct vs_error *err)
{
	int sp[2];
	if (pipe2(sp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	int ack[2] = {-1, -1};
	/* A socket pair, not a pipe: the answer may go to a launcher that has
	 * died meanwhile (it fails while we set up its network), and a send
	 * with MSG_NOSIGNAL tells us so without a SIGPIPE. */
	if (c->net_setup && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ack) < 0) {
		int e = errno;
		close(sp[0]);
		close(sp[1]);
		return vs_error_sys(err, e, "socketpair");
	}
	bool in_cgroup;
	pid_t l = fork_into_cgroup(c->cg, &in_cgroup);
	if (l < 0) {
		int e = errno;
		close(sp[0]);
		close(sp[1]);
		if (ack[0] >= 0) {
			close(ack[0]);
			close(ack[1]);
		}
		return vs_error_sys(err, e, "fork");
	}
	if (l == 0) {
		close(sp[0]);
		const int *pf = c->pooled ? c->pooled->fds : NULL;
		int keep[] = {sp[1],
			      pf ? pf[0] : -1,
			      pf ? pf[1] : -1,
			      pf ? pf[2] : -1,
			      pf ? pf[3] : -1,
			      pf ? pf[4] : -1,
			      c->exit_fd,
			      c->init_fd,
			      c->workload.stdin_fd,
			      c->workload.stdout_fd,
			      c->workload.stderr_fd,
			      c->log_pipe,
			      c->log_fd,
			      ack[0],
			      0,
			      1,
			      2};
		close_fds_except(keep, VS_ARRAY_SIZE(keep));
		struct vs_error e2;
		vs_error_clear(&e2);
		if (launcher_run(c, sp[1], ack[0], in_cgroup, &e2) < 0) {
			sliver_send(sp[1], e2.kind == VS_EK_TIMENS ? MSG_ERROR_TIMENS : MSG_ERROR,
				    e2.code, e2.msg);
			_exit(125);
		}
		_exit(0);
	}
	close(sp[1]);
	if (ack[0] >= 0)
		close(ack[0]);
	memset(res, 0, sizeof(*res));
	res->idmapped = true;
	int r = 0;
	bool failed = false;
	/* The network's host half while the launcher mounts (net_begin). */
	bool net_begun = false, net_failed = false, files_done = false, setup_done = false;
	struct vs_error net_err;
	vs_error_clear(&net_err);
	if (c->net_begin) {
		if ((r = c->net_begin(c->net_arg, err)) < 0)
			failed = true;
		else
			net_begun = true;
	}
	struct sliver_msg m;
	for (;;) {
		ssize_t n = vs_read_all(sp[0], &m, sizeof(m));
		if (n != (ssize_t)sizeof(m))
			break;
		m.text[sizeof(m.text) - 1] = '\0';
		switch (m.kind) {
		case MSG_PID:
			res->pid1 = m.code;
			vs_trace("spawn.pid1");
			break;
		case MSG_COPY_FALLBACK:
			res->idmapped = false;
			break;
		case MSG_NET_READY:
			/* The veth, lo, eth0 (net_setup), while the launcher
			 * mounts. */
			vs_trace("spawn.net_ready");
			if (!failed && !net_failed && c->net_setup && ack[1] >= 0) {
				int nl = net_sock_recv(ack[1]);
				if (launcher_net_setup(c, l, m.code, nl, &net_err) < 0)
					net_failed = true;
				else
					setup_done = true;
				if (nl >= 0)
					close(nl);
			}
			break;
		case MSG_ROOTFS_READY:
			/* The /etc files while the launcher goes on. */
			vs_trace("spawn.rootfs_ready");
			if (!failed && !net_failed && c->net_files &&
			    launcher_root_files(c, l, m.code, &net_err) < 0)
				net_failed = true;
			files_done = true;
			break;
		case MSG_EXEC_FAILED:
		case MSG_WORKDIR_FAILED:
			res->exec_code = m.code;
			if (!failed)
				r = exec_failure(err, &m);
			failed = true;
			break;
		case MSG_NET_CANCELED:
			/* The launcher heard our '0': the error is ours (below). */
			if (!failed && !net_failed)
				r = vs_error_set(err, ECANCELED, "network set-up failed");
			failed = failed || !net_failed;
			break;
		case MSG_ERROR:
		case MSG_ERROR_TIMENS:
			/* The launcher's own failure: the cause, also when our
			 * network set-up failed after it (a namespace gone). */
			if (!failed) {
				r = vs_error_set(err, m.code, "%s", m.text);
				if (m.kind == MSG_ERROR_TIMENS)
					vs_error_kind(err, VS_EK_TIMENS);
			}
			failed = true;
			break;
		}
		/* The answer: PID 1 may come once the network and the files are
		 * done ('1'; the lease lock is released after it, off the
		 * launcher's path), or never once anything failed ('0'). */
		if (ack[1] >= 0 && (failed || net_failed)) {
			net_answer(ack, '0');
		} else if (ack[1] >= 0 && setup_done && files_done) {
			net_answer(ack, '1');
			vs_trace("spawn.net_go");
			if (c->net_commit)
				c->net_commit(c->net_arg);
			net_begun = false;
		}
	}
	close(sp[0]);
	if (ack[1] >= 0)
		close(ack[1]);
	if (net_failed && !failed) {
		*err = net_err;
		r = -(net_err.code ? net_err.code : EIO);
		failed = true;
	}
	if (net_begun && c->net_abort)
		c->net_abort(c->net_arg);
	int st;
	while (waitpid(l, &st, 0) < 0 && errno == EINTR)
		;
	if (!failed && !res->pid1)
		r = vs_error_set(err, EIO, "launcher died before starting pid 1");
	if (r < 0 && res->exec_code == 0 && res->pid1 > 0) {
		/* Setup failed inside: kill the half-built slice (its pid 1 ends the ns). */
		kill(res->pid1, SIGKILL);
		res->pid1 = 0;
	}
	return r;
}

/* Forwarding target of the exec helper's signal handler. */
static volatile pid_t exec_child;
static void forward_signal(int sig)
{
	if (exec_child > 0)
		kill(exec_child, sig);
}

/* What the exec helper passes on to the command (sliver_exec_signal). */
static const int exec_forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};

bool sliver_exec_forwards(int sig)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(exec_forwarded); i++)
		if (exec_forwarded[i] == sig)
			return true;
	return false;
}

static int exec_helper(const struct sliver_exec_config *c, int sfd, bool in_cgroup,
		       struct vs_error *err)
{
	int r;
	prctl(PR_SET_DUMPABLE, 0);
	if (!in_cgroup && (r = cgroup_enter_self(c->cg, err)) < 0)
		return r;
	cleanup_close int pidfd = pidfd_open(c->pid1, 0);
	if (pidfd < 0)
		return vs_error_sys(err, errno, "pidfd_open(%d)", c->pid1);
	int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP |
		    CLONE_NEWPID | CLONE_NEWTIME;
	if (!c->host_net)
		flags |= CLONE_NEWNET;
	if (setns(pidfd, flags) < 0)
		return vs_error_sys(err, errno, "setns into slice");
	if ((r = sliver_become_root(err)) < 0)
		return r;
	struct sigaction sa = {.sa_handler = forward_signal};
	sigemptyset(&sa.sa_mask);
	sigset_t fwd;
	sigemptyset(&fwd);
	for (size_t i = 0; i < VS_ARRAY_SIZE(exec_forwarded); i++) {
		sigaction(exec_forwarded[i], &sa, NULL);
		sigaddset(&fwd, exec_forwarded[i]);
	}
	/* A daemon's thread may have them blocked (the node manager leaves
	 * them to its main thread): the helper must take them to pass on. */
	sigprocmask(SIG_UNBLOCK, &fwd, NULL);
	pid_t x = fork();
	if (x < 0)
		return vs_error_sys(err, errno, "fork");
	if (x == 0) {
		workload_exec(&c->workload, sfd);
	}
	exec_child = x;
	close(sfd);
	int st;
	while (waitpid(x, &st, 0) < 0)
		if (errno != EINTR)
			return vs_error_sys(err, errno, "waitpid");
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int sliver_exec_start(const struct sliver_exec_config *c, struct sliver_exec_proc *p,
		      struct vs_error *err)
{
	p->pid = -1;
	p->pidfd = p->status_fd = -1;
	int sp[2];
	if (pipe2(sp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	/* clone3 skips glibc's fork handlers: with other threads around, a
	 * malloc lock one of them held would stay locked in the child (whose
	 * fork() takes them all). A threaded caller gets a plain fork(). */
	bool in_cgroup = false;
	pid_t e = c->threaded ? fork() : fork_into_cgroup(c->cg, &in_cgroup);
	if (e < 0) {
		int en = errno;
		close(sp[0]);
		close(sp[1]);
		return vs_error_sys(err, en, "fork");
	}
	if (e == 0) {
		close(sp[0]);
		int keep[] = {
		    sp[1], c->workload.stdin_fd, c->workload.stdout_fd, c->workload.stderr_fd, 0, 1,
		    2};
		close_fds_except(keep, VS_ARRAY_SIZE(keep));
		struct vs_error e2;
		vs_error_clear(&e2);
		exec_helper(c, sp[1], in_cgroup, &e2);
		sliver_send(sp[1], MSG_ERROR, e2.code, e2.msg);
		_exit(125);
	}
	close(sp[1]);
	p->pid = e;
	p->status_fd = sp[0];
	/* Not reaped before sliver_exec_wait: the pid cannot be reused. */
	p->pidfd = pidfd_open(e, 0);
	return 0;
}

int sliver_exec_wait(struct sliver_exec_proc *p, int *code, struct vs_error *err)
{
	int st, r = 0;
	while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
		;
	struct sliver_msg m;
	bool failed = false;
	while (vs_read_all(p->status_fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		m.text[sizeof(m.text) - 1] = '\0';
		if (failed)
			continue;
		if (m.kind == MSG_ERROR) {
			r = vs_error_set(err, m.code, "%s", m.text);
			failed = true;
		} else if (m.kind == MSG_EXEC_FAILED || m.kind == MSG_WORKDIR_FAILED) {
			r = exec_failure(err, &m);
			*code = m.code;
			failed = true;
		}
	}
	close(p->status_fd);
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->status_fd = p->pidfd = -1;
	p->pid = -1;
	if (!failed)
		*code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return r;
}

int sliver_exec_signal(const struct sliver_exec_proc *p, int sig)
{
	if (!sliver_exec_forwards(sig))
		return -EINVAL;
	if (p->pidfd < 0 || syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

/*
 * The command is the helper's only child, and stays its child (a zombie at
 * worst) until the helper reaps it and exits. So: open a pidfd for the pid
 * the helper lists, then check it still lists it - the pidfd is then the
 * command's and no recycled pid's - and kill through it.
 */
void sliver_exec_kill(const struct sliver_exec_proc *p)
{
	if (p->pid <= 0)
		return;
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", p->pid, p->pid);
	for (int round = 0; round < 2; round++) {
		ssize_t n = -1;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
		}
		if (n <= 0)
			break;
		buf[n] = '\0';
		pid_t child = (pid_t)strtol(buf, NULL, 10);
		if (child <= 0)
			break;
		int cfd = pidfd_open(child, 0);
		if (cfd < 0)
			break;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = '\0';
			if ((pid_t)strtol(buf, NULL, 10) == child)
				syscall(SYS_pidfd_send_signal, cfd, SIGKILL, NULL, 0);
		}
		close(cfd);
		break;
	}
	if (p->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
}

/* build/gen/init_blob.S: the static vslice-init binary and its sha256. */
extern const char vs_init_blob[], vs_init_blob_end[], vs_init_hash[];

/*
 * The file is named exactly "vslice-init", in a directory named by its hash:
 * execveat(fd, "", AT_EMPTY_PATH) names the new program (/proc/PID/comm)
 * after the file's dentry, so PID 1 is "vslice-init" from its first
 * instruction on. A hash in the file name ("vslice-init-a5a...") showed
 * through to a workload that looked before vslice-init's own PR_SET_NAME.
 */
int sliver_init_open(const char *cache_dir, struct vs_error *err)
{
	cleanup_free char *dir = vs_xasprintf("%s/init-%.16s", cache_dir, vs_init_hash);
	cleanup_free char *path = vs_xasprintf("%s/vslice-init", dir);
	size_t len = (size_t)(vs_init_blob_end - vs_init_blob);
	struct stat st;
	/* Execute-only (0111): the slice's ids cannot read it, so the kernel
	 * makes PID 1 non-dumpable from the exec on (would_dump), not only
	 * once vslice-init's prctl runs; nothing in the slice can open PID 1's
	 * fds (the exit record, the log) in between. */
	if (stat(path, &st) < 0 || (size_t)st.st_size != len || st.st_uid != 0 ||
	    (st.st_mode & 07777) != 0111) {
		int r = vs_mkdir_p(dir, 0700, err);
		if (r < 0)
			return r;
		if ((r = vs_write_file_atomic(path, vs_init_blob, len, 0111, err)) < 0)
			return r;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s", path);
	return fd;
}

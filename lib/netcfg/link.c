/*
 * link.c - the devices of bridged slice networking, through libnl-route:
 * the node's bridge (with the gateway address), each slice's veth pair (host
 * end a bridge port, the other end created straight inside the slice's
 * network namespace as eth0), the slice-side address, link state and default
 * route, and the slice's /etc/resolv.conf and /etc/hosts.
 *
 * Work inside a slice's namespace uses a netlink socket made there: the one
 * the launcher made and handed over, or one opened by a short-lived thread
 * that enters the namespace and ends: a socket stays in the namespace it
 * was made in, and no thread of the caller (the node manager is
 * multi-threaded) ever stays in the slice's namespace.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <linux/neighbour.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <netlink/msg.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "netcfg_int.h"
#include "vslice/util.h"

static int nl_to_errno(int nlerr)
{
	switch (-nlerr < 0 ? nlerr : -nlerr) {
	case NLE_EXIST:
		return EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return ENODEV;
	case NLE_PERM:
		return EPERM;
	case NLE_NOMEM:
		return ENOMEM;
	case NLE_BUSY:
		return EBUSY;
	case NLE_INVAL:
		return EINVAL;
	default:
		return EIO;
	}
}

int nl_fail(struct vs_error *err, int nlerr, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return vs_error_set(err, nl_to_errno(nlerr), "%s: %s", what, nl_geterror(nlerr));
}

int nl_open(struct nl_sock **out, struct vs_error *err)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (!sk)
		return vs_error_set(err, ENOMEM, "netlink socket");
	int r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(sk);
		return nl_fail(err, r, "netlink connect");
	}
	*out = sk;
	return 0;
}

struct netns_job {
	int netns_fd;
	int (*fn)(void *arg, struct vs_error *err);
	void *arg;
	struct vs_error err;
	int r;
};

static void *netns_thread(void *arg)
{
	struct netns_job *j = arg;
	if (setns(j->netns_fd, CLONE_NEWNET) < 0)
		j->r = vs_error_sys(&j->err, errno, "enter the slice's network namespace");
	else
		j->r = j->fn(j->arg, &j->err);
	return NULL; /* the thread, and its network namespace, end here */
}

int netns_call(int netns_fd, int (*fn)(void *arg, struct vs_error *err), void *arg,
	       struct vs_error *err)
{
	struct netns_job j = {.netns_fd = netns_fd, .fn = fn, .arg = arg};
	pthread_t th;
	int e = pthread_create(&th, NULL, netns_thread, &j);
	if (e)
		return vs_error_sys(err, e, "thread for the slice's network namespace");
	pthread_join(th, NULL);
	if (j.r < 0)
		*err = j.err;
	return j.r;
}

static int open_here(void *arg, struct vs_error *err)
{
	return nl_open(arg, err);
}

int nl_open_in(int netns_fd, struct nl_sock **sk, struct vs_error *err)
{
	/* A socket stays in the namespace it was made in. */
	return netns_call(netns_fd, open_here, sk, err);
}

int link_index(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	if (rtnl_link_get_kernel(sk, 0, name, &l) < 0)
		return 0;
	int i = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	return i;
}

/* What the kernel says of a link made with NLM_F_ECHO: its index, and for a
 * veth its peer's index and the peer's namespace as this one names it. */
struct link_echo {
	int ifindex, link, link_nsid;
	bool seen, has_link, has_nsid;
};

static void link_echo_parse(struct nlmsghdr *h, struct link_echo *e)
{
	struct nlattr *tb[IFLA_MAX + 1];
	if (h->nlmsg_type != RTM_NEWLINK ||
	    nlmsg_parse(h, sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0)
		return;
	const struct ifinfomsg *ifi = nlmsg_data(h);
	e->seen = true;
	e->ifindex = ifi->ifi_index;
	if (tb[IFLA_LINK]) {
		e->has_link = true;
		e->link = (int)nla_get_u32(tb[IFLA_LINK]);
	}
	if (tb[IFLA_LINK_NETNSID]) {
		e->has_nsid = true;
		e->link_nsid = (int32_t)nla_get_u32(tb[IFLA_LINK_NETNSID]);
	}
}

/*
 * The n requests msgs (freed here) in one sendmsg on the netlink socket fd,
 * each asking for an ack; the n answers read. rtnetlink handles them in
 * order, each whatever the one before got. res[i]: 0 or -errno of request
 * i; an RTM_NEWLINK echo (NLM_F_ECHO) goes to *echo. Returns 0, or -errno
 * when the exchange itself failed. The sequence numbers are ours alone
 * (every answer is read here), so a libnl socket's fd may carry it.
 */
static int nl_batch(int fd, struct nl_msg **msgs, size_t n, int *res, struct link_echo *echo)
{
	enum { SEQ0 = 0x76730000 }; /* "vs": apart from libnl's time-based ones */
	struct iovec iov[4];
	if (n > VS_ARRAY_SIZE(iov))
		abort();
	for (size_t i = 0; i < n; i++) {
		struct nlmsghdr *h = nlmsg_hdr(msgs[i]);
		h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
		h->nlmsg_seq = SEQ0 + (uint32_t)i;
		h->nlmsg_pid = 0;
		iov[i] = (struct iovec){h, h->nlmsg_len};
		res[i] = 1; /* no answer yet */
	}
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	struct msghdr mh = {
	    .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = iov, .msg_iovlen = n};
	ssize_t sent = sendmsg(fd, &mh, 0);
	int e = errno;
	for (size_t i = 0; i < n; i++)
		nlmsg_free(msgs[i]);
	if (sent < 0)
		return -e;
	size_t got = 0;
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	while (got < n) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)r);
		     h = NLMSG_NEXT(h, r)) {
			uint32_t i = h->nlmsg_seq - SEQ0;
			if (i >= n)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *ne = nlmsg_data(h);
				if (res[i] == 1)
					got++;
				res[i] = ne->error;
			} else if (echo) {
				link_echo_parse(h, echo);
			}
		}
	}
	return 0;
}

int link_remove(struct nl_sock *sk, const char *name, struct vs_error *err)
{
	struct rtnl_link *l = rtnl_link_alloc();
	rtnl_link_set_name(l, name);
	int r = rtnl_link_delete(sk, l);
	rtnl_link_put(l);
	if (r < 0 && r != -NLE_NODEV && r != -NLE_OBJ_NOTFOUND)
		return nl_fail(err, r, "delete link %s", name);
	return 0;
}

size_t link_indexes(struct nl_sock *sk, const char *const *names, size_t n, int *idx)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int x = names[i][0] ? link_index(sk, names[i]) : 0;
		if (x)
			idx[k++] = x;
	}
	return k;
}

void links_delete_index(const int *idx, size_t n)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (sk && nl_connect(sk, NETLINK_ROUTE) >= 0)
		for (size_t i = 0; i < n; i++) {
			struct rtnl_link *l = rtnl_link_alloc();
			rtnl_link_set_ifindex(l, idx[i]);
			(void)rtnl_link_delete(sk, l);
			rtnl_link_put(l);
		}
	if (sk)
		nl_socket_free(sk);
}

struct links_gone {
	const int *idx;
	size_t n;
};

static void links_gone_run(void *arg)
{
	const struct links_gone *g = arg;
	links_delete_index(g->idx, g->n);
}

int links_remove_detached(const int *idx, size_t n, int fd, struct vs_error *err)
{
	if (!n && fd < 0)
		return 0;
	/* Nothing of the caller's (the lease lock above all, its stdio:
	 * whoever reads the caller's output would wait for this process) but
	 * fd, which the detached process holds until it ends: this close is
	 * not its last. */
	struct links_gone g = {idx, n};
	int r = vs_spawn_detached(links_gone_run, &g, fd);
	if (fd >= 0)
		close(fd);
	return r < 0 ? vs_error_sys(err, -r, "fork") : 0;
}

int link_up(struct nl_sock *sk, const char *name, int master, struct vs_error *err)
{
	struct rtnl_link *l = NULL, *chg = rtnl_link_alloc();
	int r = rtnl_link_get_kernel(sk, 0, name, &l);
	if (r >= 0) {
		rtnl_link_set_flags(chg, IFF_UP);
		if (master)
			rtnl_link_set_master(chg, master);
		r = rtnl_link_change(sk, l, chg, 0);
	}
	rtnl_link_put(chg);
	if (l)
		rtnl_link_put(l);
	return r < 0 ? nl_fail(err, r, "link %s up", name) : 0;
}

static int addr_add(struct nl_sock *sk, int ifindex, uint32_t ip, unsigned prefix,
		    struct vs_error *err)
{
	uint32_t be = htonl(ip);
	struct nl_addr *local = nl_addr_build(AF_INET, &be, 4);
	struct rtnl_addr *a = rtnl_addr_alloc();
	if (!local || !a)
		return vs_error_set(err, ENOMEM, "address");
	nl_addr_set_prefixlen(local, (int)prefix);
	rtnl_addr_set_ifindex(a, ifindex);
	rtnl_addr_set_local(a, local);
	int r = rtnl_addr_add(sk, a, 0);
	rtnl_addr_put(a);
	nl_addr_put(local);
	if (r < 0 && r != -NLE_EXIST) {
		char s[16];
		ipam_fmt(ip, s);
		return nl_fail(err, r, "add address %s/%u", s, prefix);
	}
	return 0;
}

int bridge_ensure(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err)
{
	int r, idx = link_index(sk, st->bridge);
	if (!idx) {
		struct rtnl_link *br = rtnl_link_bridge_alloc();
		rtnl_link_set_name(br, st->bridge);
		/* With the overlay every node's bridge is the same gateway (address
		 * and MAC): a slice that moves finds it where it was. */
		uint8_t mac[6];
		lease_mac(ipam_gateway(st), mac);
		struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, sizeof(mac));
		if (!br || !lladdr)
			return vs_error_set(err, ENOMEM, "bridge");
		if (st->vni)
			rtnl_link_set_addr(br, lladdr);
		r = rtnl_link_add(sk, br, NLM_F_CREATE | NLM_F_EXCL);
		rtnl_link_put(br);
		nl_addr_put(lladdr);
		if (r < 0)
			return nl_fail(err, r, "create bridge %s", st->bridge);
		idx = link_index(sk, st->bridge);
	}
	if ((r = addr_add(sk, idx, ipam_gateway(st), st->prefix, err)) < 0 ||
	    (r = link_up(sk, st->bridge, 0, err)) < 0)
		return vs_error_wrap(err, "bridge %s", st->bridge);
	return 0;
}

/* Locally administered, and from the address: a restarted slice keeps it. */
void lease_mac(uint32_t ip, uint8_t mac[6])
{
	mac[0] = 0x02;
	mac[1] = 0x76; /* 'v' */
	mac[2] = (uint8_t)(ip >> 24);
	mac[3] = (uint8_t)(ip >> 16);
	mac[4] = (uint8_t)(ip >> 8);
	mac[5] = (uint8_t)ip;
}

int veth_create(struct nl_sock *sk, const struct ipam_state *st, const struct ipam_lease *l,
		int bridge, int netns_fd, int *host_ifindex, int *eth0_ifindex,
		struct vs_error *err)
{
	uint8_t mac[6];
	lease_mac(l->ip, mac);
	*host_ifindex = *eth0_ifindex = 0;
	struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, sizeof(mac));
	struct rtnl_link *veth = rtnl_link_veth_alloc();
	if (!veth || !lladdr)
		return vs_error_set(err, ENOMEM, "veth");
	struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
	/* One request: the host end up and a port of the bridge, the other end
	 * born as eth0 inside the slice's namespace with its MAC (down: the
	 * kernel cannot open a veth end before its peer exists, and refuses
	 * the whole request, ENOTCONN, if asked to). */
	rtnl_link_set_name(veth, l->veth);
	rtnl_link_set_flags(veth, IFF_UP);
	rtnl_link_set_master(veth, bridge);
	rtnl_link_set_name(peer, "eth0");
	rtnl_link_set_addr(peer, lladdr);
	rtnl_link_set_ns_fd(peer, netns_fd);
	if (st->vni) {
		/* Room for the VXLAN header: the bridge cannot fragment. */
		rtnl_link_set_mtu(veth, st->mtu);
		rtnl_link_set_mtu(peer, st->mtu);
	}
	struct nl_msg *m = NULL;
	int r = rtnl_link_build_add_request(veth, NLM_F_CREATE | NLM_F_EXCL, &m);
	rtnl_link_put(peer);
	rtnl_link_veth_release(veth);
	nl_addr_put(lladdr);
	if (r < 0)
		return nl_fail(err, r, "create veth %s", l->veth);
	/* The echo (kernels from 6.2) names the host end's index, eth0's, and
	 * the slice's namespace as ours numbers it (allocated by the kernel
	 * when it made eth0 there): no lookup after. */
	nlmsg_hdr(m)->nlmsg_flags |= NLM_F_ECHO;
	struct link_echo echo = {0};
	int res[2];
	int fd = nl_socket_get_fd(sk);
	if ((r = nl_batch(fd, &m, 1, res, &echo)) < 0)
		return vs_error_sys(err, -r, "create veth %s", l->veth);
	if (res[0] < 0)
		return vs_error_sys(err, -res[0], "create veth %s", l->veth);
	int idx = echo.seen ? echo.ifindex : link_index(sk, l->veth);
	if (!idx)
		return vs_error_set(err, ENODEV, "veth %s: gone", l->veth);
	*host_ifindex = idx;
	*eth0_ifindex = echo.has_link ? echo.link : 0;
	/* The bridge knows the slice's port from the start: nothing sent to
	 * the slice is flooded to the other ports while it has not spoken yet,
	 * and no announcement from the slice is needed (a slice that moved here
	 * is reached at once). The entry goes with the port. */
	struct nl_msg *fdb = fdb_msg(RTM_NEWNEIGH, idx, mac, NTF_MASTER, 0);
	if (!fdb)
		return vs_error_set(err, ENOMEM, "fdb entry");
	if ((r = nl_batch(fd, &fdb, 1, res, NULL)) < 0 || (r = res[0]) < 0)
		return vs_error_sys(err, -r, "veth %s: static fdb entry", l->veth);
	return 0;
}

int slice_side_config(int netns_fd, int nl_fd, const struct ipam_state *st,
		      const struct ipam_lease *l, int eth0_ifindex, struct vs_error *err)
{
	cleanup_nlsock struct nl_sock *sk = NULL;
	int r, idx = eth0_ifindex;
	if (nl_fd < 0 || !idx) {
		/* No socket from the launcher, or no index from the kernel's
		 * echo: a socket of our own in the namespace. */
		if ((r = nl_open_in(netns_fd, &sk, err)) < 0)
			return r;
		nl_fd = nl_socket_get_fd(sk);
		if (!idx)
			idx = link_index(sk, "eth0");
	}
	if (!idx)
		return vs_error_set(err, ENODEV, "eth0: not in the slice's namespace");
	/* rtnetlink takes them in order: the link is up and the address's
	 * subnet route there when the default route via the gateway is
	 * checked. */
	uint32_t ip = htonl(l->ip), gw = htonl(ipam_gateway(st));
	struct ifinfomsg lo = {.ifi_family = AF_UNSPEC, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
	struct ifinfomsg eth = lo;
	eth.ifi_index = idx;
	struct ifaddrmsg ifa = {.ifa_family = AF_INET,
				.ifa_prefixlen = (unsigned char)st->prefix,
				.ifa_scope = RT_SCOPE_UNIVERSE,
				.ifa_index = (unsigned)idx};
	struct rtmsg rtm = {.rtm_family = AF_INET,
			    .rtm_table = RT_TABLE_MAIN,
			    .rtm_protocol = RTPROT_STATIC,
			    .rtm_scope = RT_SCOPE_UNIVERSE,
			    .rtm_type = RTN_UNICAST};
	struct nl_msg *req[4] = {nlmsg_alloc_simple(RTM_SETLINK, 0),
				 nlmsg_alloc_simple(RTM_SETLINK, 0),
				 nlmsg_alloc_simple(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL),
				 nlmsg_alloc_simple(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)};
	if (!req[0] || !req[1] || !req[2] || !req[3] ||
	    nlmsg_append(req[0], &lo, sizeof(lo), NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(req[0], IFLA_IFNAME, "lo") < 0 ||
	    nlmsg_append(req[1], &eth, sizeof(eth), NLMSG_ALIGNTO) < 0 ||
	    nlmsg_append(req[2], &ifa, sizeof(ifa), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(req[2], IFA_LOCAL, ip) < 0 || nla_put_u32(req[2], IFA_ADDRESS, ip) < 0 ||
	    nlmsg_append(req[3], &rtm, sizeof(rtm), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(req[3], RTA_GATEWAY, gw) < 0 ||
	    nla_put_u32(req[3], RTA_OIF, (uint32_t)idx) < 0) {
		for (int i = 0; i < 4; i++)
			if (req[i])
				nlmsg_free(req[i]);
		return vs_error_set(err, ENOMEM, "the slice's eth0");
	}
	int res[4];
	if ((r = nl_batch(nl_fd, req, 4, res, NULL)) < 0)
		return vs_error_sys(err, -r, "the slice's eth0: netlink");
	char s[16];
	ipam_fmt(l->ip, s);
	if (res[0] < 0)
		return vs_error_sys(err, -res[0], "the slice's lo: up");
	if (res[1] < 0)
		return vs_error_sys(err, -res[1], "the slice's eth0: up");
	if (res[2] < 0 && res[2] != -EEXIST)
		return vs_error_sys(err, -res[2], "the slice's eth0: add address %s/%u", s,
				    st->prefix);
	if (res[3] < 0 && res[3] != -EEXIST)
		return vs_error_sys(err, -res[3], "the slice's eth0: default route");
	return 0;
}

/* The node's name servers a slice can reach: loopback ones (a local stub
 * resolver) are not reachable from the slice and are left out. */
static char *resolv_conf_text(void)
{
	cleanup_fclose FILE *f = fopen("/etc/resolv.conf", "re");
	char *text = NULL, line[512];
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		abort();
	fputs("# written by vslice (--net bridge) from the node's resolv.conf\n", out);
	while (f && fgets(line, sizeof(line), f)) {
		char ns[64];
		struct in_addr in;
		if (sscanf(line, "nameserver %63s", ns) == 1) {
			if (inet_pton(AF_INET, ns, &in) == 1 && (ntohl(in.s_addr) >> 24) != 127)
				fprintf(out, "nameserver %s\n", ns);
		} else if (!strncmp(line, "search ", 7) || !strncmp(line, "options ", 8)) {
			fputs(line, out);
		}
	}
	fclose(out);
	return text;
}

/*
 * Write name into the slice's etc/ as a new file renamed over the old one:
 * etc/ is resolved beneath the slice's root (RESOLVE_IN_ROOT: its symlinks
 * cannot lead to the host's files), and the rename replaces a symlink the
 * image may have put at name instead of writing through it.
 */
static int etc_write(int etcfd, const char *name, const char *text, uid_t owner,
		     struct vs_error *err)
{
	char tmp[64];
	snprintf(tmp, sizeof(tmp), ".%s.vslice-tmp", name);
	unlinkat(etcfd, tmp, 0);
	cleanup_close int fd =
	    openat(etcfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return vs_error_sys(err, errno, "slice /etc/%s", name);
	if (vs_write_all(fd, text, strlen(text)) < 0 || fchown(fd, owner, owner) < 0 ||
	    renameat(etcfd, tmp, etcfd, name) < 0) {
		int e = errno;
		unlinkat(etcfd, tmp, 0);
		return vs_error_sys(err, e, "slice /etc/%s", name);
	}
	return 0;
}

int etc_files_write(int rootfs_fd, uid_t owner, const char *hostname, const char *ip,
		    struct vs_error *err)
{
	struct open_how how = {
	    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	cleanup_close int etc = (int)syscall(SYS_openat2, rootfs_fd, "etc", &how, sizeof(how));
	if (etc < 0)
		return vs_error_sys(err, errno, "slice /etc");
	cleanup_free char *resolv = resolv_conf_text();
	cleanup_free char *hosts =
	    vs_xasprintf("# written by vslice (--net bridge)\n127.0.0.1\tlocalhost\n"
			 "::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
			 ip, hostname);
	int r;
	if ((r = etc_write(etc, "resolv.conf", resolv, owner, err)) < 0 ||
	    (r = etc_write(etc, "hosts", hosts, owner, err)) < 0)
		return r;
	return 0;
}

int sysctl_forward(int value, int *old, struct vs_error *err)
{
	const char *path = "/proc/sys/net/ipv4/ip_forward";
	char buf[8] = "";
	cleanup_close int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || pread(fd, buf, sizeof(buf) - 1, 0) < 0)
		return vs_error_sys(err, errno, "%s", path);
	if (old)
		*old = atoi(buf);
	char v = value ? '1' : '0';
	if (pwrite(fd, &v, 1, 0) != 1)
		return vs_error_sys(err, errno, "write %s", path);
	return 0;
}

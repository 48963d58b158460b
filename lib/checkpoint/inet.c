/*
 * inet.c - TCP and UDP sockets of the slice's own network namespace in a
 * checkpoint: listeners, bound sockets, UDP sockets (bound, connected) with
 * their integer options, and established TCP connections between two
 * sockets of the tree, read and rebuilt in TCP_REPAIR mode (libsoccr's
 * order), and the datagrams queued to a UDP socket (peeked with their
 * sender and destination; the restore sends each again from that sender
 * through a raw socket of the new network namespace, so the program reads
 * the same datagrams from the same addresses). Anything else (peers
 * outside the tree, half-closed connections, pending accepts) is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include "files.h"
#include "vslice/util.h"

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
	int d = ck_getfd(pid, fd);
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
		    ? ck_put_data(w, kind, id, 0, buf, len, err)
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

/* --- datagrams queued to a UDP socket -------------------------------------- */

#define UDP_PAYLOAD_MAX 65535 /* no IPv4 or IPv6 (non-jumbo) datagram is larger */
#define UDP_QUEUE_MAX	100000

static bool v4mapped(const uint8_t a[16])
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return !memcmp(a, pre, sizeof(pre));
}

/* The sender and destination of the datagram recvmsg m peeked, into h: a
 * v4-mapped pair (an IPv4 datagram on a dual-stack socket) as IPv4. */
static int udp_ends(const struct msghdr *m, struct ck_udp_dgram *h, struct vs_error *err)
{
	const struct sockaddr_storage *from = m->msg_name;
	bool have_dst = false;
	memset(h, 0, sizeof(*h));
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c;
	     c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			memcpy(h->dst, &pi.ipi_addr, 4);
			have_dst = true;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			memcpy(h->dst, &pi.ipi6_addr, 16);
			have_dst = true;
		}
	}
	if (!have_dst)
		return vs_error_set(err, EPROTO,
				    "UDP socket: a queued datagram without its destination");
	if (from->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)from;
		h->family = AF_INET;
		h->sport = a->sin_port;
		memcpy(h->src, &a->sin_addr, 4);
	} else if (from->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
		h->sport = a->sin6_port;
		if (v4mapped(a->sin6_addr.s6_addr) && v4mapped(h->dst)) {
			h->family = AF_INET;
			memcpy(h->src, a->sin6_addr.s6_addr + 12, 4);
			memmove(h->dst, h->dst + 12, 4);
			memset(h->dst + 4, 0, 12);
		} else {
			h->family = AF_INET6;
			memcpy(h->src, &a->sin6_addr, 16);
		}
	} else {
		return vs_error_set(err, EPROTO, "UDP socket: a queued datagram from family %d",
				    from->ss_family);
	}
	return 0;
}

/* Every datagram queued to UDP socket dup, peeked in order (SO_PEEK_OFF;
 * nothing is taken off the queue, the socket's own options are put back):
 * CK_D_UDP_DGRAM records, off = the index. */
static int dump_udp_queue(struct ck_writer *w, int dup, int family, uint32_t id,
			  struct vs_error *err)
{
	int lvl = family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
	int opt = family == AF_INET ? IP_PKTINFO : IPV6_RECVPKTINFO;
	int was = 0, peek_was = -1, on = 1, zero = 0;
	socklen_t l = sizeof(was), pl = sizeof(peek_was);
	if (getsockopt(dup, lvl, opt, &was, &l) < 0 ||
	    getsockopt(dup, SOL_SOCKET, SO_PEEK_OFF, &peek_was, &pl) < 0 ||
	    setsockopt(dup, lvl, opt, &on, sizeof(on)) < 0 ||
	    setsockopt(dup, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0)
		return vs_error_sys(err, errno, "UDP socket: peek at its queue");
	cleanup_free uint8_t *buf = vs_xmalloc(sizeof(struct ck_udp_dgram) + UDP_PAYLOAD_MAX);
	int r = 0;
	for (int i = 0; r >= 0; i++) {
		if (i == UDP_QUEUE_MAX) {
			r = vs_error_set(err, E2BIG, "UDP socket: over %d queued datagrams",
					 UDP_QUEUE_MAX);
			break;
		}
		struct sockaddr_storage from;
		union {
			char b[CMSG_SPACE(sizeof(struct in6_pktinfo)) * 4];
			struct cmsghdr align;
		} cb;
		struct iovec iov = {buf + sizeof(struct ck_udp_dgram), UDP_PAYLOAD_MAX};
		struct msghdr m = {.msg_name = &from,
				   .msg_namelen = sizeof(from),
				   .msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = cb.b,
				   .msg_controllen = sizeof(cb.b)};
		memset(&from, 0, sizeof(from));
		ssize_t n = recvmsg(dup, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				r = vs_error_sys(err, errno, "UDP socket: peek datagram %d", i);
			break;
		}
		if (n > UDP_PAYLOAD_MAX || (m.msg_flags & MSG_TRUNC)) {
			r = vs_error_set(err, EMSGSIZE, "UDP socket: queued datagram %d too large",
					 i);
			break;
		}
		struct ck_udp_dgram h;
		if ((r = udp_ends(&m, &h, err)) < 0)
			break;
		memcpy(buf, &h, sizeof(h));
		r = ck_put_data(w, CK_D_UDP_DGRAM, id, (uint64_t)i, buf, sizeof(h) + (size_t)n,
				err);
	}
	setsockopt(dup, SOL_SOCKET, SO_PEEK_OFF, &peek_was, sizeof(peek_was));
	setsockopt(dup, lvl, opt, &was, sizeof(was));
	return r;
}

/* The one's-complement sum of UDP over IPv6 (RFC 8200 8.1): pseudo-header
 * (addresses, length, next header) then the UDP header and payload. */
static uint16_t udp6_checksum(const uint8_t src[16], const uint8_t dst[16], const uint8_t *udp,
			      size_t len)
{
	uint64_t sum = 0;
	for (int i = 0; i < 16; i += 2)
		sum += (uint32_t)(src[i] << 8 | src[i + 1]) + (uint32_t)(dst[i] << 8 | dst[i + 1]);
	sum += (uint32_t)len + IPPROTO_UDP;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(udp[i] << 8 | udp[i + 1]);
	if (len & 1)
		sum += (uint32_t)udp[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t c = (uint16_t)~sum;
	return c ? c : 0xffff;
}

/* Is addr (family) an address of this network namespace? (A datagram sent
 * again to any other address would leave through a route.) */
static bool addr_is_local(int family, const uint8_t *addr)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, addr, 4);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, addr, 16);
		len = sizeof(*a);
	}
	int s = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	bool ok = bind(s, (struct sockaddr *)&ss, len) == 0;
	close(s);
	return ok;
}

/* The datagrams queued to file id's UDP socket at the dump, sent again to
 * it (bound to port, network order) in their order from their senders: an
 * IPv4 or IPv6 header and a UDP header built here, through a raw socket of
 * this network namespace. A destination that is not an address here any
 * more is replaced by loopback (the socket is bound to the wildcard, or
 * the bind would have failed). */
static int replay_udp_queue(const struct ckpt_image *img, uint32_t id, uint16_t port,
			    struct vs_error *err)
{
	int raw[2] = {-1, -1}; /* AF_INET, AF_INET6 */
	cleanup_free uint8_t *pkt = NULL;
	int r = 0;
	for (size_t i = 0; i < img->data.n && r >= 0; i++) {
		const struct ck_data_r *d = &img->data.v[i];
		if (d->h.kind != CK_D_UDP_DGRAM || d->h.id != id)
			continue;
		struct ck_udp_dgram h;
		if (d->h.len < sizeof(h) || d->h.len - sizeof(h) > UDP_PAYLOAD_MAX - 48) {
			r = vs_error_set(err, EBADMSG, "UDP socket of file %u: bad datagram record",
					 id);
			break;
		}
		memcpy(&h, d->data, sizeof(h));
		if (h.family != AF_INET && h.family != AF_INET6) {
			r = vs_error_set(err, EBADMSG, "UDP socket of file %u: datagram family %u",
					 id, h.family);
			break;
		}
		size_t plen = d->h.len - sizeof(h), ulen = sizeof(struct udphdr) + plen;
		bool v4 = h.family == AF_INET;
		size_t hl = v4 ? sizeof(struct iphdr) : sizeof(struct ip6_hdr);
		if (!pkt)
			pkt = vs_xmalloc(sizeof(struct ip6_hdr) + sizeof(struct udphdr) +
					 UDP_PAYLOAD_MAX);
		if (!addr_is_local(h.family, h.dst)) {
			memset(h.dst, 0, sizeof(h.dst));
			if (v4)
				h.dst[0] = 127, h.dst[3] = 1;
			else
				h.dst[15] = 1;
		}
		struct udphdr u = {.source = h.sport, .dest = port, .len = htons((uint16_t)ulen)};
		memcpy(pkt + hl, &u, sizeof(u));
		memcpy(pkt + hl + sizeof(u), d->data + sizeof(h), plen);
		struct sockaddr_storage to;
		memset(&to, 0, sizeof(to));
		socklen_t tl;
		if (v4) {
			struct iphdr ip = {.version = 4,
					   .ihl = 5,
					   .ttl = 64,
					   .protocol = IPPROTO_UDP,
					   .tot_len = htons((uint16_t)(hl + ulen))};
			memcpy(&ip.saddr, h.src, 4);
			memcpy(&ip.daddr, h.dst, 4);
			memcpy(pkt, &ip, sizeof(ip)); /* the kernel fills the checksum and id */
			struct sockaddr_in *a = (struct sockaddr_in *)&to;
			a->sin_family = AF_INET;
			memcpy(&a->sin_addr, h.dst, 4);
			tl = sizeof(*a);
		} else {
			struct ip6_hdr ip;
			memset(&ip, 0, sizeof(ip));
			ip.ip6_flow = htonl(6u << 28);
			ip.ip6_plen = htons((uint16_t)ulen);
			ip.ip6_nxt = IPPROTO_UDP;
			ip.ip6_hlim = 64;
			memcpy(&ip.ip6_src, h.src, 16);
			memcpy(&ip.ip6_dst, h.dst, 16);
			memcpy(pkt, &ip, sizeof(ip));
			uint16_t c = htons(udp6_checksum(h.src, h.dst, pkt + hl, ulen));
			memcpy(pkt + hl + offsetof(struct udphdr, check), &c, sizeof(c));
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&to;
			a->sin6_family = AF_INET6;
			memcpy(&a->sin6_addr, h.dst, 16);
			tl = sizeof(*a);
		}
		int *rs = &raw[v4 ? 0 : 1];
		if (*rs < 0 && (*rs = socket(h.family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)) < 0) {
			r = vs_error_sys(err, errno,
					 "UDP socket of file %u: a raw socket to requeue "
					 "its datagrams",
					 id);
			break;
		}
		ssize_t n = sendto(*rs, pkt, hl + ulen, MSG_DONTWAIT, (struct sockaddr *)&to, tl);
		if (n != (ssize_t)(hl + ulen))
			r = vs_error_sys(err, n < 0 ? errno : EIO,
					 "UDP socket of file %u: requeue datagram %" PRIu64, id,
					 d->h.off);
	}
	for (int i = 0; i < 2; i++)
		if (raw[i] >= 0)
			close(raw[i]);
	return r;
}

/* A TCP listener, a bound or unbound TCP socket, a TCP connection between
 * two sockets of the tree, or a UDP socket (bound, connected) of the
 * tree's own network namespace; everything else is refused. If w is set,
 * its CK_SEC_INET record (and queues) are written. */
int ck_inet_dump(struct ck_writer *w, pid_t hpid, int dup, uint32_t id, struct vs_error *err)
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
			if (!ck_tree_fd_any(hpid, tcp_peer_match, &q))
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
		if (ioctl(dup, FIONREAD, &q) < 0)
			return vs_error_sys(err, errno, "UDP socket: FIONREAD");
		if (w && q > 0) {
			int r = dump_udp_queue(w, dup, n.family, id, err);
			if (r < 0)
				return r;
		}
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
int ck_inet_resume(const struct ckpt_image *img, const struct ck_pool *pool, struct vs_error *err)
{
	for (size_t i = 0; i < img->inets.n; i++) {
		const struct ck_inet *n = &img->inets.v[i];
		if (n->type != SOCK_STREAM || n->state != TCP_ESTABLISHED)
			continue;
		int s = ck_pool_fd_of(img, pool, n->file_id), q = TCP_NO_QUEUE, off = 0;
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
int ck_inet_create(const struct ckpt_image *img, const struct ck_file *f, struct vs_error *err)
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
	if (r >= 0 && n->type == SOCK_DGRAM && n->local_len) {
		in_port_t port = n->family == AF_INET
				     ? ((const struct sockaddr_in *)n->local)->sin_port
				     : ((const struct sockaddr_in6 *)n->local)->sin6_port;
		r = replay_udp_queue(img, f->id, port, err);
	}
	if (r < 0) {
		close(s);
		return r;
	}
	return s;
}

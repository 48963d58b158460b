/*
 * inet.c - TCP and UDP sockets of the slice's own network namespace in a
 * checkpoint: listeners, bound sockets, UDP sockets (bound, connected) with
 * their integer options, and established TCP connections between two
 * sockets of the tree, read and rebuilt in TCP_REPAIR mode (libsoccr's
 * order). Anything else (peers outside the tree, half-closed connections,
 * pending accepts, queued datagrams) is refused.
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
#include <netinet/tcp.h>
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
	if (r < 0) {
		close(s);
		return r;
	}
	return s;
}

/*
 * nodemgr_exec.c - remote exec and shell: the node manager's side of
 * GET /v1/slivers/NAME/exec (docs/cluster-api.md, "Remote exec").
 *
 * The request carries a ticket for verb exec (or shell, with shell=1) on
 * slice NAME: nm_ticket_check redeems it at the registry (one ticket, one
 * command) before anything else happens. The answer is a 101 to
 * EXEC_PROTO; the stream is then framed (include/vslice/exec_proto.h):
 * the client's START names the command, and the command runs exactly as
 * local `slicectl exec` runs it - slice_exec_start, in the slice's
 * namespaces, cgroup, user ids, capabilities and seccomp filter - never as
 * root on the host. Its stdio is a pty (tty) or three pipes, relayed here.
 *
 * One thread per stream (httpd.h's upgrade thread), one poll() loop:
 *   socket -> frames: STDIN to the command (one frame held at most; a
 *     command that does not read stops us reading the socket), EOF closes
 *     its stdin, WINSIZE sets the pty's size (the kernel sends SIGWINCH),
 *     SIGNAL goes through the exec helper (only the signals it forwards);
 *   command's stdout/stderr (or pty) -> STDOUT/STDERR frames, read only
 *     while the out buffer has room: a client that stops reading stops the
 *     command at its next write, and the node's memory stays put;
 *   the helper's pidfd -> the command is over: what it wrote last is
 *     drained (until EOF, or 200 ms without a byte: a background process
 *     may hold the pipe), then ERROR (if vslice could not run it) and EXIT.
 * The client closing first (or httpd_stop shutting the stream) hangs the
 * command up: SIGHUP, and SIGKILL if it is still there after KILL_GRACE_MS.
 * A PING every PING_MS makes a dead client's end show within two of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/exec_proto.h"
#include "vslice/httpd.h"
#include "vslice/slice.h"
#include "vslice/sliver.h"
#include "vslice/util.h"

#define START_WAIT_MS	 30000 /* for the client's START frame */
#define DRAIN_IDLE_MS	 200   /* after the exit: output quiet this long is over */
#define KILL_GRACE_MS	 3000  /* after SIGHUP on a hang-up, before SIGKILL */
#define LINGER_MS	 5000  /* after EXIT: for the client to close first */
#define EXIT_CODE_VSLICE 125   /* as slicectl's: vslice could not run the command */
/* A PING frame this often while the command runs: with TLS, libmicrohttpd
 * relays the stream through a socketpair and tells us of a client gone
 * (killed, its host down) only once a write to it fails. */
#define PING_MS 2000

struct nm_exec {
	struct nodemgr *nm;
	char *slice;
	bool shell;
};

static void exec_free(void *arg)
{
	struct nm_exec *x = arg;
	free(x->slice);
	free(x);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The stream's state in the relay loop. */
struct session {
	struct nm_exec *x;
	int sock;
	struct exec_in in;
	struct exec_out out;
	bool sock_eof; /* the client closed (or the stream broke) */
	/* the command */
	struct sliver_exec_proc proc;
	bool started, exited;
	int in_fd;  /* its stdin (pipe write end, or the pty master); -1 closed */
	int out_fd; /* its stdout (pipe read end, or the pty master) */
	int err_fd; /* its stderr (pipe read end); -1 with a pty */
	bool tty;
	const unsigned char *pending; /* a STDIN frame's bytes not yet written */
	size_t pending_len;
	struct exec_frame pending_frame;
	bool have_pending;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Send what is in the out buffer; false when the stream is broken. */
static bool flush_some(struct session *s)
{
	while (!exec_out_empty(&s->out)) {
		ssize_t n = send(s->sock, s->out.b + s->out.off, s->out.len - s->out.off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0) {
			s->sock_eof = true;
			return false;
		}
		exec_out_sent(&s->out, (size_t)n);
	}
	return true;
}

/* Send the whole out buffer, waiting for the socket (the end of a stream). */
static void flush_all(struct session *s, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	while (!exec_out_empty(&s->out) && !s->sock_eof) {
		if (!flush_some(s) || exec_out_empty(&s->out))
			break;
		uint64_t t = now_ms();
		if (t >= deadline)
			break;
		struct pollfd p = {.fd = s->sock, .events = POLLOUT};
		poll(&p, 1, (int)(deadline - t));
	}
}

/* Queue a control frame (ERROR, EXIT), making room by sending first. */
static void put_control(struct session *s, int type, const void *data, size_t len)
{
	while (!exec_out_put(&s->out, type, data, len)) {
		flush_all(s, 60000);
		if (s->sock_eof || !exec_out_empty(&s->out))
			return;
	}
}

/* The end of a stream vslice could not start: ERROR, EXIT code. */
static void refuse(struct session *s, int code, const char *msg)
{
	put_control(s, EXEC_ERROR, msg, strnlen(msg, EXEC_FRAME_MAX));
	unsigned char c[4];
	exec_put_u32(c, (uint32_t)code);
	put_control(s, EXEC_EXIT, c, sizeof(c));
	flush_all(s, 10000);
}

/* Read from the socket into s->in; false on EOF/error (s->sock_eof). */
static bool read_sock(struct session *s)
{
	size_t room = exec_in_room(&s->in);
	if (!room)
		return true;
	ssize_t n = recv(s->sock, s->in.b + s->in.len, room, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return true;
	if (n <= 0) {
		s->sock_eof = true;
		return false;
	}
	s->in.len += (size_t)n;
	return true;
}

/* The client's START frame, waited for up to START_WAIT_MS. */
static int read_start(struct session *s, struct exec_start *st, struct vs_error *err)
{
	uint64_t deadline = now_ms() + START_WAIT_MS;
	for (;;) {
		struct exec_frame f;
		int r = exec_in_frame(&s->in, &f, err);
		if (r < 0)
			return r;
		if (r > 0) {
			if (f.type != EXEC_START)
				return vs_error_set(err, EPROTO,
						    "exec stream: the first frame is not START");
			r = exec_start_parse(f.data, f.len, s->x->shell, st, err);
			exec_in_consume(&s->in, &f);
			return r;
		}
		if (!exec_in_room(&s->in))
			return vs_error_set(err, EPROTO, "exec stream: no START frame");
		uint64_t t = now_ms();
		if (t >= deadline)
			return vs_error_set(err, ETIMEDOUT, "exec stream: no START within %d s",
					    START_WAIT_MS / 1000);
		struct pollfd p = {.fd = s->sock, .events = POLLIN};
		if (poll(&p, 1, (int)(deadline - t)) > 0 && !read_sock(s))
			return vs_error_set(err, ECONNRESET, "exec stream: closed before START");
	}
}

/* The command's stdio: a pty (master kept, slave for all three) or pipes.
 * fds[] gets the command's ends; ours go into s. */
static int make_stdio(struct session *s, const struct exec_start *st, int fds[3],
		      struct vs_error *err)
{
	if (st->tty) {
		cleanup_close int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
			return vs_error_sys(err, errno, "allocate a pty");
		char name[64];
		if (ptsname_r(master, name, sizeof(name)) != 0)
			return vs_error_sys(err, errno, "pty name");
		int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave < 0)
			return vs_error_sys(err, errno, "open pty %s", name);
		if (st->rows && st->cols) {
			struct winsize ws = {.ws_row = (unsigned short)st->rows,
					     .ws_col = (unsigned short)st->cols};
			ioctl(slave, TIOCSWINSZ, &ws);
		}
		fcntl(master, F_SETFL, O_NONBLOCK);
		fds[0] = fds[1] = fds[2] = slave;
		s->tty = true;
		s->out_fd = steal_fd(&master);
		s->in_fd = dup(s->out_fd);
		if (s->in_fd < 0)
			return vs_error_sys(err, errno, "dup");
		fcntl(s->in_fd, F_SETFD, FD_CLOEXEC);
		return 0;
	}
	int p[3][2];
	for (int i = 0; i < 3; i++) {
		if (pipe2(p[i], O_CLOEXEC) < 0) {
			int e = errno;
			for (int k = 0; k < i; k++)
				close(p[k][0]), close(p[k][1]);
			return vs_error_sys(err, e, "pipe");
		}
	}
	fds[0] = p[0][0], s->in_fd = p[0][1];
	fds[1] = p[1][1], s->out_fd = p[1][0];
	fds[2] = p[2][1], s->err_fd = p[2][0];
	fcntl(s->in_fd, F_SETFL, O_NONBLOCK);
	fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
	fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
	return 0;
}

/* Handle the frames in s->in until one must wait (a STDIN frame the
 * command has not taken yet). < 0: a protocol error. */
static int take_frames(struct session *s, struct vs_error *err)
{
	while (!s->have_pending) {
		struct exec_frame f;
		int r = exec_in_frame(&s->in, &f, err);
		if (r <= 0)
			return r;
		switch (f.type) {
		case EXEC_STDIN:
			if (s->in_fd >= 0 && f.len) {
				s->pending_frame = f;
				s->pending = f.data;
				s->pending_len = f.len;
				s->have_pending = true;
				continue; /* consumed once written */
			}
			break; /* stdin closed: dropped */
		case EXEC_EOF:
			if (!s->tty) /* a terminal has no end but the hang-up */
				close_fd(&s->in_fd);
			break;
		case EXEC_WINSIZE:
			if (s->tty && f.len == 4) {
				struct winsize ws = {
				    .ws_row = (unsigned short)(f.data[0] << 8 | f.data[1]),
				    .ws_col = (unsigned short)(f.data[2] << 8 | f.data[3])};
				ioctl(s->out_fd, TIOCSWINSZ, &ws);
			}
			break;
		case EXEC_SIGNAL:
			/* Only what the helper forwards (INT, TERM, HUP, QUIT; not
			 * WINCH, which the pty's size sends): another signal would
			 * be the helper's own. */
			if (f.len == 1 && f.data[0] != SIGWINCH)
				(void)sliver_exec_signal(&s->proc, f.data[0]);
			break;
		default:
			return vs_error_set(err, EPROTO,
					    "exec stream: frame type '%c' from the client", f.type);
		}
		exec_in_consume(&s->in, &f);
	}
	return 0;
}

/* Write the pending STDIN bytes; the command's stdin closed drops them. */
static void write_pending(struct session *s)
{
	while (s->have_pending && s->pending_len) {
		ssize_t n = write(s->in_fd, s->pending, s->pending_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* EPIPE: nobody reads it any more */
			if (!s->tty)
				close_fd(&s->in_fd);
			break;
		}
		s->pending += n;
		s->pending_len -= (size_t)n;
	}
	if (s->have_pending) {
		exec_in_consume(&s->in, &s->pending_frame);
		s->have_pending = false;
	}
}

/* Read the command's output from *fd into a frame of type; EOF closes it.
 * true when bytes came. */
static bool read_output(struct session *s, int *fd, int type)
{
	unsigned char *p = exec_out_begin(&s->out, EXEC_CHUNK);
	if (!p)
		return false;
	ssize_t n = read(*fd, p, EXEC_CHUNK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) { /* EOF, or EIO: the pty's last slave fd is closed */
		if (*fd == s->in_fd)
			s->in_fd = -1;
		close_fd(fd);
		return false;
	}
	exec_out_commit(&s->out, type, (size_t)n);
	return true;
}

/* The client is gone before the command: hang it up, then kill it. */
static void hang_up(struct session *s)
{
	close_fd(&s->in_fd);
	if (s->tty)
		close_fd(&s->out_fd); /* the pty's hang-up: SIGHUP to its session */
	(void)sliver_exec_signal(&s->proc, SIGHUP);
	struct pollfd p = {.fd = s->proc.pidfd, .events = POLLIN};
	if (poll(&p, 1, KILL_GRACE_MS) <= 0)
		sliver_exec_kill(&s->proc);
}

/* The relay loop (see the top of the file) until the command is over and
 * its output drained, or the client is gone. */
static void relay(struct session *s)
{
	struct vs_error err;
	uint64_t quiet_since = 0, pinged = now_ms();
	for (;;) {
		if (!s->exited && now_ms() - pinged >= PING_MS) {
			if (exec_out_empty(&s->out))
				exec_out_put(&s->out, EXEC_PING, NULL, 0);
			pinged = now_ms();
		}
		/* Every whole frame already in: a STDIN frame the pipe took at
		 * once lets the next one (EOF, say) go too, with no new byte
		 * from the socket to wake us for it. */
		for (;;) {
			if (take_frames(s, &err) < 0) {
				nm_log(s->x->nm, NODEMGR_LOG_INFO, "exec %s: %s", s->x->slice,
				       err.msg);
				s->sock_eof = true; /* a broken client: treat as gone */
				break;
			}
			if (!s->have_pending)
				break;
			write_pending(s);
			if (s->have_pending)
				break; /* the pipe is full: wait for POLLOUT */
		}
		if (s->sock_eof && !s->exited) {
			hang_up(s);
			return;
		}
		bool outputs = s->out_fd >= 0 || s->err_fd >= 0;
		if (s->exited &&
		    (!outputs || (quiet_since && now_ms() - quiet_since >= DRAIN_IDLE_MS)))
			return;
		bool room = exec_out_room(&s->out) >= EXEC_CHUNK;
		struct pollfd p[5] = {
		    {.fd = s->sock,
		     .events = (short)((exec_in_room(&s->in) && !s->have_pending ? POLLIN : 0) |
				       (exec_out_empty(&s->out) ? 0 : POLLOUT))},
		    {.fd = s->have_pending ? s->in_fd : -1, .events = POLLOUT},
		    {.fd = room ? s->out_fd : -1, .events = POLLIN},
		    {.fd = room ? s->err_fd : -1, .events = POLLIN},
		    {.fd = s->exited ? -1 : s->proc.pidfd, .events = POLLIN},
		};
		int timeout = s->exited && room ? DRAIN_IDLE_MS : PING_MS;
		int n = poll(p, 5, timeout);
		if (n < 0 && errno != EINTR)
			return;
		if (n == 0 && !s->exited) {
			flush_some(s); /* the PING */
			continue;
		}
		if (n == 0 && s->exited && room) {
			if (!quiet_since)
				quiet_since = now_ms();
			continue;
		}
		if (p[0].revents & POLLOUT)
			flush_some(s);
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
			read_sock(s);
		bool got = false;
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
			got |= read_output(s, &s->out_fd, EXEC_STDOUT);
		if (p[3].revents & (POLLIN | POLLHUP | POLLERR))
			got |= read_output(s, &s->err_fd, EXEC_STDERR);
		if (got)
			quiet_since = 0;
		if (p[4].revents & POLLIN) {
			s->exited = true;
			close_fd(&s->in_fd);
			quiet_since = 0;
		}
		if (!exec_out_empty(&s->out))
			flush_some(s);
	}
}

static void exec_session(void *arg, int sock, const char *extra, size_t extra_len)
{
	struct nm_exec *x = arg;
	nm_block_sigpipe();
	struct session *s = vs_xcalloc(1, sizeof(*s)); /* two frame buffers: not on the stack */
	s->x = x;
	s->sock = sock;
	s->in_fd = s->out_fd = s->err_fd = -1;
	s->proc.pid = -1;
	s->proc.pidfd = s->proc.status_fd = -1;
	struct vs_error err;
	/* Bytes the client sent behind its request: the stream's start. More
	 * than a frame's worth before the 101 is no client of ours. */
	if (extra_len > sizeof(s->in.b)) {
		vs_error_set(&err, EPROTO, "exec stream: %zu bytes before the switch", extra_len);
		refuse(s, EXIT_CODE_VSLICE, err.msg);
		free(s);
		return;
	}
	if (extra_len)
		memcpy(s->in.b, extra, extra_len);
	s->in.len = extra_len;

	struct exec_start st;
	if (read_start(s, &st, &err) < 0) {
		nm_log(x->nm, NODEMGR_LOG_INFO, "exec %s: %s", x->slice, err.msg);
		refuse(s, EXIT_CODE_VSLICE, err.msg);
		free(s);
		return;
	}
	static char sh[] = "/bin/sh";
	char *sh_argv[] = {sh, NULL};
	int fds[3] = {-1, -1, -1};
	int r = make_stdio(s, &st, fds, &err);
	struct slice_exec_opts o = {
	    .argv = x->shell ? sh_argv : st.argv,
	    .env = st.env,
	    .workdir = st.workdir,
	    .tty = st.tty,
	    .stdio = fds,
	    .threaded = true,
	};
	if (r == 0)
		r = slice_exec_start(x->nm->root, x->slice, &o, &s->proc, &err);
	/* The command has its ends (or never will): ours go, so its exit is
	 * our EOF. A pty's three are one fd. */
	close_fd(&fds[0]);
	if (fds[1] != fds[0])
		close_fd(&fds[1]);
	if (fds[2] != fds[0])
		close_fd(&fds[2]);
	if (r == 0 && s->proc.pidfd < 0) {
		sliver_exec_kill(&s->proc);
		struct vs_error ignore;
		int code;
		sliver_exec_wait(&s->proc, &code, &ignore);
		r = vs_error_set(&err, ENOSYS, "pidfd_open: not supported by this kernel");
	}
	if (r < 0) {
		nm_log(x->nm, NODEMGR_LOG_INFO, "exec %s: %s", x->slice, err.msg);
		refuse(s, EXIT_CODE_VSLICE, err.msg);
	} else {
		nm_log(x->nm, NODEMGR_LOG_INFO, "exec %s: %s%s (helper pid %d)", x->slice,
		       x->shell ? "shell" : o.argv[0], st.tty ? " on a pty" : "", (int)s->proc.pid);
		relay(s);
		int code = EXIT_CODE_VSLICE;
		r = sliver_exec_wait(&s->proc, &code, &err);
		if (!s->sock_eof) {
			if (r < 0)
				put_control(s, EXEC_ERROR, err.msg, strlen(err.msg));
			unsigned char c[4];
			exec_put_u32(c, (uint32_t)code);
			put_control(s, EXEC_EXIT, c, sizeof(c));
			flush_all(s, 60000);
		}
		nm_log(x->nm, NODEMGR_LOG_INFO, "exec %s: over, code %d%s", x->slice, code,
		       s->sock_eof ? " (the client had gone)" : "");
	}
	/* The client closes once it has EXIT: wait for that (a close of
	 * ours with its bytes unread could reset what we sent). */
	if (!s->sock_eof) {
		shutdown(sock, SHUT_WR);
		uint64_t deadline = now_ms() + LINGER_MS;
		while (!s->sock_eof && now_ms() < deadline) {
			struct pollfd p = {.fd = sock, .events = POLLIN};
			if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
				break;
			s->in.len = 0;
			read_sock(s);
		}
	}
	close_fd(&s->in_fd);
	close_fd(&s->out_fd);
	close_fd(&s->err_fd);
	exec_start_free(&st);
	free(s);
}

void nm_exec_handle(struct httpd_request *req, const char *name, struct httpd_answer *a)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	if (strcmp(req->method, "GET")) {
		httpd_answer_error(a, 405, "exec %s: GET with Upgrade: %s only", name, EXEC_PROTO);
		return;
	}
	const char *shell = httpd_query(req, "shell");
	bool is_shell = shell && !strcmp(shell, "1");
	/* Before the ticket is spent: a request that cannot switch would
	 * waste it. */
	if (!httpd_wants_upgrade(req, EXEC_PROTO)) {
		httpd_answer_error(a, 426, "exec %s: needs Connection: Upgrade, Upgrade: %s", name,
				   EXEC_PROTO);
		httpd_answer_header(a, "Upgrade", EXEC_PROTO);
		return;
	}
	unsigned status = 0;
	struct vs_error err;
	if (nm_ticket_check(nm, req, name, is_shell ? "shell" : "exec", &status, &err) < 0) {
		httpd_answer_error(a, status ? status : 403, "%s", err.msg);
		return;
	}
	struct nm_exec *x = vs_xcalloc(1, sizeof(*x));
	x->nm = nm;
	x->slice = vs_xstrdup(name);
	x->shell = is_shell;
	httpd_answer_upgrade(a, EXEC_PROTO, exec_session, x, exec_free);
}

/*
 * exec.c - slicectl exec and shell: a command inside a running slice, with
 * the slice's isolation and policy. With a terminal (-t, and shell), the
 * command gets a fresh pty whose master we relay to our own terminal, so
 * nothing inside the slice ever holds our terminal (TIOCSTI-proof).
 *
 * Cluster mode: the same on a sliver on any node. A ticket from the
 * registry (verb exec or shell, bound to us, the slice and the node) opens
 * GET /v1/slivers/NAME/exec on the node manager's API, switched to the
 * framed stream of exec_proto.h; the node runs the command as local exec
 * does (its pty, when asked, is the node's). Here: our stdin to STDIN
 * frames, STDOUT/STDERR frames to ours, the window size at the start and
 * on SIGWINCH, SIGINT/SIGTERM/SIGHUP/SIGQUIT forwarded (with a pty, Ctrl-C
 * is a byte like any other: the raw terminal sends it, the remote pty
 * turns it into SIGINT), and EXIT's code as ours. Our terminal goes back
 * to the mode it had on every way out but SIGKILL.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/exec_proto.h"
#include "vslice/http.h"
#include "vslice/nodeapi.h"
#include "vslice/json.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

struct relay {
	int in, out; /* our terminal (saved before fds 0-2 become the pty) */
	int master;
	int stop[2];
};

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	char buf[4096];
	struct pollfd p[3] = {
	    {.fd = r->in, .events = POLLIN},
	    {.fd = r->master, .events = POLLIN},
	    {.fd = r->stop[0], .events = POLLIN},
	};
	for (;;) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(r->master, buf, sizeof(buf));
			if (n <= 0)
				p[1].fd = -1;
			else if (vs_write_all(r->out, buf, (size_t)n) < 0)
				break;
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(r->in, buf, sizeof(buf));
			if (n <= 0)
				p[0].fd = -1;
			else if (vs_write_all(r->master, buf, (size_t)n) < 0)
				break;
		}
		if (p[2].revents) {
			/* The command is gone. What it wrote last may still be on its way
			 * through the pty (the kernel pushes it from a work queue): read
			 * until the pty reports its end, or nothing came for 200 ms (a
			 * background process still holding the terminal). */
			struct pollfd m = {.fd = r->master, .events = POLLIN};
			while (p[1].fd >= 0 && poll(&m, 1, 200) > 0) {
				ssize_t n = read(r->master, buf, sizeof(buf));
				if (n <= 0 || vs_write_all(r->out, buf, (size_t)n) < 0)
					break;
			}
			break;
		}
	}
	return NULL;
}

/* Run in the slice with a pty; the relay thread copies both ways. */
static int exec_tty(struct ctl *ctl, const char *name, struct slice_exec_opts *o, int *code,
		    struct vs_error *err)
{
	cleanup_close int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
		return vs_error_sys(err, errno, "allocate a pty");
	char *sname = ptsname(master);
	cleanup_close int slave = sname ? open(sname, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
	if (slave < 0)
		return vs_error_sys(err, errno, "open pty %s", sname ? sname : "?");
	struct winsize ws;
	if (ioctl(0, TIOCGWINSZ, &ws) == 0)
		ioctl(slave, TIOCSWINSZ, &ws);
	struct termios saved, raw;
	bool is_tty = tcgetattr(0, &saved) == 0;
	if (is_tty) {
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
	}
	/* The command's stdio is the pty slave, via slice_exec's fds 0-2: swap
	 * ours, keeping the originals for the relay. */
	int s0 = fcntl(0, F_DUPFD_CLOEXEC, 3), s1 = fcntl(1, F_DUPFD_CLOEXEC, 3);
	int s2 = fcntl(2, F_DUPFD_CLOEXEC, 3);
	struct relay rl = {.in = s0, .out = s1, .master = master};
	if (pipe2(rl.stop, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	pthread_t th;
	pthread_create(&th, NULL, relay_main, &rl);
	dup2(slave, 0);
	dup2(slave, 1);
	dup2(slave, 2);
	int r = slice_exec(ctl->root, name, o, code, err);
	dup2(s0, 0);
	dup2(s1, 1);
	dup2(s2, 2);
	/* Stop the relay; it drains what is left on the master first, writing
	 * to s1: close the saved fds only once it is done. */
	close(slave);
	slave = -1;
	(void)!write(rl.stop[1], "x", 1);
	pthread_join(th, NULL);
	close(s0);
	close(s1);
	close(s2);
	close(rl.stop[0]);
	close(rl.stop[1]);
	if (is_tty)
		tcsetattr(0, TCSANOW, &saved);
	return r;
}

/* ---- cluster mode --------------------------------------------------- */

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int e = errno;
	unsigned char c = (unsigned char)sig;
	(void)!write(sig_pipe[1], &c, 1);
	errno = e;
}

struct remote {
	struct http_upgraded *u;
	struct exec_in in;
	struct exec_out out;
	bool tty, stdin_eof, got_exit, lost;
	bool output_gone; /* our stdout/stderr's reader is gone (EPIPE) */
	int code;
	char error[VS_ERROR_MAX]; /* an ERROR frame's line */
	struct vs_error err;	  /* the stream's own failure */
};

static void put_winsize(struct remote *r)
{
	struct winsize ws;
	if (ioctl(0, TIOCGWINSZ, &ws) < 0)
		return;
	unsigned char p[4] = {(unsigned char)(ws.ws_row >> 8), (unsigned char)ws.ws_row,
			      (unsigned char)(ws.ws_col >> 8), (unsigned char)ws.ws_col};
	exec_out_put(&r->out, EXEC_WINSIZE, p, sizeof(p));
}

/* The node's frames: output to ours, ERROR kept, EXIT ends it. */
static int take_frames(struct remote *r)
{
	for (;;) {
		struct exec_frame f;
		int n = exec_in_frame(&r->in, &f, &r->err);
		if (n <= 0)
			return n;
		switch (f.type) {
		case EXEC_STDOUT:
		case EXEC_STDERR:
			/* Blocking: a slow reader of ours slows the node down. A
			 * reader gone (yes | head -1) ends the stream: the node
			 * hangs the command up, as a pipe's end would kill it. */
			if (vs_write_all(f.type == EXEC_STDOUT ? 1 : 2, f.data, f.len) < 0) {
				r->output_gone = errno == EPIPE;
				return vs_error_sys(&r->err, errno, "write our output");
			}
			break;
		case EXEC_PING:
			break;
		case EXEC_ERROR:
			snprintf(r->error, sizeof(r->error), "%.*s", (int)f.len, f.data);
			break;
		case EXEC_EXIT:
			if (f.len != 4)
				return vs_error_set(&r->err, EPROTO,
						    "exec stream: a bad EXIT frame");
			r->code = (int)exec_get_u32(f.data);
			r->got_exit = true;
			return 0;
		default:
			return vs_error_set(&r->err, EPROTO,
					    "exec stream: frame type '%c' from the node", f.type);
		}
		exec_in_consume(&r->in, &f);
	}
}

/* Receive what is there (until -EAGAIN), handling frames. < 0 on error. */
static int pull(struct remote *r)
{
	while (!r->got_exit && exec_in_room(&r->in)) {
		ssize_t n =
		    http_upgraded_recv(r->u, r->in.b + r->in.len, exec_in_room(&r->in), &r->err);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		if (n == 0) {
			r->lost = true;
			return 0;
		}
		r->in.len += (size_t)n;
		if (take_frames(r) < 0)
			return -1;
	}
	return 0;
}

/* Send what is queued (until -EAGAIN). < 0 on error. */
static int push(struct remote *r)
{
	while (!exec_out_empty(&r->out)) {
		ssize_t n = http_upgraded_send(r->u, r->out.b + r->out.off, r->out.len - r->out.off,
					       &r->err);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		exec_out_sent(&r->out, (size_t)n);
	}
	return 0;
}

static int relay_remote(struct remote *r)
{
	for (;;) {
		if (pull(r) < 0 || push(r) < 0)
			return -1;
		if (r->got_exit || r->lost)
			return 0;
		bool room = exec_out_room(&r->out) >= EXEC_CHUNK;
		struct pollfd p[3] = {
		    {.fd = http_upgraded_fd(r->u),
		     .events = (short)(POLLIN | (exec_out_empty(&r->out) ? 0 : POLLOUT))},
		    {.fd = !r->stdin_eof && room ? 0 : -1, .events = POLLIN},
		    {.fd = sig_pipe[0], .events = POLLIN},
		};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return vs_error_sys(&r->err, errno, "poll");
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			unsigned char *buf = exec_out_begin(&r->out, EXEC_CHUNK);
			ssize_t n = buf ? read(0, buf, EXEC_CHUNK) : -1;
			if (n > 0) {
				exec_out_commit(&r->out, EXEC_STDIN, (size_t)n);
			} else if (buf && (n == 0 || errno != EINTR)) {
				r->stdin_eof = true;
				exec_out_put(&r->out, EXEC_EOF, NULL, 0);
			}
		}
		if (p[2].revents & POLLIN) {
			unsigned char sigs[16];
			ssize_t n = read(sig_pipe[0], sigs, sizeof(sigs));
			for (ssize_t i = 0; i < n; i++) {
				if (sigs[i] == SIGWINCH)
					put_winsize(r);
				else
					exec_out_put(&r->out, EXEC_SIGNAL, &sigs[i], 1);
			}
		}
	}
}

/* The stream, with our terminal raw (a pty there) and our signals caught;
 * both put back before it returns, whatever happened. */
static int run_remote(struct remote *r)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
	struct sigaction sa = {.sa_handler = on_signal}, old[VS_ARRAY_SIZE(sigs)];
	sigemptyset(&sa.sa_mask);
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return vs_error_sys(&r->err, errno, "pipe");
	for (size_t i = 0; i < VS_ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, &old[i]);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
	sigaction(SIGPIPE, &ign, &old_pipe); /* our stdout closed: EPIPE, not death */
	struct termios saved;
	bool raw = r->tty && tcgetattr(0, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		tcsetattr(0, TCSANOW, &t);
	}
	int ret = relay_remote(r);
	if (raw)
		tcsetattr(0, TCSANOW, &saved);
	sigaction(SIGPIPE, &old_pipe, NULL);
	for (size_t i = 0; i < VS_ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &old[i], NULL);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	sig_pipe[0] = sig_pipe[1] = -1;
	return ret;
}

/* exec/shell on the sliver of slice name on node (NULL: its only one). */
static int remote_exec(struct ctl *ctl, const char *verb, const char *name, const char *node,
		       struct slice_exec_opts *o)
{
	bool shell = !strcmp(verb, "shell");
	struct vs_error err;
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, verb, &hc);
	if (r)
		return r;
	cleanup_json json_t *t = NULL;
	long status = 0;
	if (regclient_ticket_create(&hc, name, node, verb, &t, &status, &err) < 0)
		return ctl_fail(verb, status > 0 ? NULL : name, &err);
	const char *ticket = json_string_value(json_object_get(t, "ticket"));
	const char *url = json_string_value(json_object_get(t, "url"));
	const char *on = json_string_value(json_object_get(t, "node"));
	if (!ticket || !url || !on) {
		vs_error_set(&err, EPROTO, "the registry's ticket lacks ticket, url or node");
		return ctl_fail(verb, name, &err);
	}
	cleanup_http struct http_client nc;
	memset(&nc, 0, sizeof(nc));
	if (http_client_init_peer(&nc, url, ticket, ctl->ca_file, "node", &err) < 0) {
		memset(&nc, 0, sizeof(nc));
		return ctl_fail(verb, name, &err);
	}
	cleanup_free char *path = nodeapi_sliver_path(name, "exec", shell ? "?shell=1" : NULL);
	unsigned rows = 0, cols = 0;
	struct winsize ws;
	if (o->tty && ioctl(0, TIOCGWINSZ, &ws) == 0)
		rows = ws.ws_row, cols = ws.ws_col;
	cleanup_json json_t *start =
	    exec_start_json(shell ? NULL : o->argv, o->env, o->workdir, o->tty, rows, cols);
	cleanup_free char *text = start ? json_dumps(start, JSON_COMPACT) : NULL;
	if (!text) {
		vs_error_set(&err, EINVAL,
			     "the command or an --env is not UTF-8 (the stream carries JSON)");
		return ctl_fail(verb, name, &err);
	}
	struct remote *rm = vs_xcalloc(1, sizeof(*rm)); /* two frame buffers: not on the stack */
	rm->tty = o->tty;
	if (!exec_out_put(&rm->out, EXEC_START, text, strlen(text))) {
		free(rm);
		vs_error_set(&err, E2BIG, "the command line is over %u bytes", EXEC_FRAME_MAX);
		return ctl_fail(verb, name, &err);
	}
	if (http_upgrade(&nc, path, EXEC_PROTO, &rm->u, &status, &err) < 0) {
		free(rm);
		return ctl_fail(verb, status > 0 ? NULL : name, &err);
	}
	r = run_remote(rm);
	http_upgraded_close(rm->u);
	int code = rm->code;
	char shown[128];
	if (rm->output_gone) {
		code = 128 + SIGPIPE; /* what the command would have died of locally */
	} else if (r < 0 || !rm->got_exit) {
		if (r == 0)
			vs_error_set(&rm->err, ECONNRESET,
				     "node %s: the stream ended before the command's exit", on);
		fprintf(stderr, "%s%s: %s %s: %s\n", rm->tty ? "\r\n" : "", "slicectl", verb,
			vs_printable(name, shown, sizeof(shown)), rm->err.msg);
		code = EXIT_VSLICE;
	} else if (rm->error[0]) {
		char m[VS_ERROR_MAX];
		fprintf(stderr, "slicectl: %s %s: %s\n", verb,
			vs_printable(name, shown, sizeof(shown)),
			vs_printable(rm->error, m, sizeof(m)));
	}
	free(rm);
	return code;
}

static int do_exec(struct ctl *ctl, const char *verb, const char *name, const char *node,
		   struct slice_exec_opts *o)
{
	struct vs_error err;
	int code = 0, r;
	bool cluster = ctl->registry && *ctl->registry;
	if (node && !cluster)
		return ctl_usage(verb, "--node: only in cluster mode (--registry URL)");
	if (o->tty && !isatty(0)) {
		/* A pty fed from a file or pipe never sees its end (EOF is a
		 * keystroke on a terminal): the command would wait for ever.
		 * Like ssh -t, run it on our plain stdio instead. */
		char shown[128];
		fprintf(stderr, "slicectl: %s %s: stdin is not a terminal: running without a pty\n",
			verb, vs_printable(name, shown, sizeof(shown)));
		o->tty = false;
	}
	if (cluster)
		return remote_exec(ctl, verb, name, node, o);
	if (o->tty)
		r = exec_tty(ctl, name, o, &code, &err);
	else
		r = slice_exec(ctl->root, name, o, &code, &err);
	if (r < 0) {
		ctl_fail(verb, name, &err);
		return code == 126 || code == 127 ? code : EXIT_VSLICE;
	}
	return code;
}

static const char exec_help[] =
    "usage: slicectl exec [-t] [--env K=V]... [--workdir DIR] [--node N] NAME -- CMD ARG...\n\n"
    "Run CMD inside the running slice NAME with the slice's isolation and\n"
    "policy; exits with CMD's exit code.\n"
    "  -t, --tty          give CMD a terminal (a fresh pty relayed to ours; without\n"
    "                     a terminal on stdin, CMD runs on plain stdio, as without -t)\n"
    "  --env K=V          extra environment (repeatable)\n"
    "  --workdir DIR      working directory (default: the slice's)\n"
    "  --node N           cluster mode: the sliver on node N (needed when the slice\n"
    "                     has several)\n\n"
    "In cluster mode (--registry) the same on the slice's sliver: slicectl gets a\n"
    "ticket from the registry and talks to the node manager's API (--ca for its\n"
    "certificate); stdin, stdout, stderr, the exit code, -t, Ctrl-C work as locally.\n";

int cmd_exec(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, exec_help))
		return 0;
	static const struct option opts[] = {
	    {"tty", no_argument, NULL, 't'},
	    {"env", required_argument, NULL, 'e'},
	    {"workdir", required_argument, NULL, 'w'},
	    {"node", required_argument, NULL, 'n'},
	    {0},
	};
	const char *node = NULL;
	int split = ctl_split(argc, argv);
	struct slice_exec_opts o = {0};
	cleanup_free char **env = vs_xcalloc((size_t)argc + 1, sizeof(char *));
	size_t nenv = 0;
	int c;
	while ((c = getopt_long(split, argv, "+t", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			o.tty = true;
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return ctl_usage("exec", "--env: \"%s\" is not K=V", optarg);
			env[nenv++] = optarg;
			break;
		case 'w':
			if (optarg[0] != '/')
				return ctl_usage(
				    "exec", "--workdir: \"%s\" is not an absolute path", optarg);
			o.workdir = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		default:
			return ctl_usage("exec", "unknown option");
		}
	}
	if (optind >= split)
		return ctl_usage("exec", "missing slice NAME");
	if (optind + 1 < split)
		return ctl_usage("exec", "unexpected \"%s\" (put the command after --)",
				 argv[optind + 1]);
	if (split + 1 >= argc)
		return ctl_usage("exec", "missing command (slicectl exec NAME -- CMD ARG...)");
	o.argv = argv + split + 1;
	o.env = env;
	return do_exec(ctl, "exec", argv[optind], node, &o);
}

static const char shell_help[] =
    "usage: slicectl shell [--node N] NAME\n\nAn interactive /bin/sh inside the running slice, "
    "on a fresh\n"
    "pty. When stdin is not a terminal, /bin/sh reads it without a pty (echo ls | slicectl\n"
    "shell NAME).\n"
    "  --node N   cluster mode: the sliver on node N (needed when the slice has several)\n\n"
    "In cluster mode (--registry) the same on the slice's sliver, through the node\n"
    "manager's API with a ticket from the registry (see slicectl exec --help).\n";

int cmd_shell(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, shell_help))
		return 0;
	static const struct option opts[] = {{"node", required_argument, NULL, 'n'}, {0}};
	const char *node = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c != 'n')
			return ctl_usage("shell", "unknown option");
		node = optarg;
	}
	if (optind >= argc)
		return ctl_usage("shell", "missing slice NAME");
	if (optind + 1 != argc)
		return ctl_usage("shell", "one NAME only");
	static char sh[] = "/bin/sh";
	char *av[] = {sh, NULL};
	struct slice_exec_opts o = {.argv = av, .tty = true};
	return do_exec(ctl, "shell", argv[optind], node, &o);
}

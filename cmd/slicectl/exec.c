/*
 * exec.c - slicectl exec and shell: a command inside a running slice, with
 * the slice's isolation and policy. With a terminal (-t, and shell), the
 * command gets a fresh pty whose master we relay to our own terminal, so
 * nothing inside the slice ever holds our terminal (TIOCSTI-proof).
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

static int do_exec(struct ctl *ctl, const char *verb, const char *name, struct slice_exec_opts *o)
{
	struct vs_error err;
	int code = 0, r;
	if (o->tty && !isatty(0)) {
		/* A pty fed from a file or pipe never sees its end (EOF is a
		 * keystroke on a terminal): the command would wait for ever.
		 * Like ssh -t, run it on our plain stdio instead. */
		char shown[128];
		fprintf(stderr, "slicectl: %s %s: stdin is not a terminal: running without a pty\n",
			verb, vs_printable(name, shown, sizeof(shown)));
		o->tty = false;
	}
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
    "usage: slicectl exec [-t] [--env K=V]... [--workdir DIR] NAME -- CMD ARG...\n\n"
    "Run CMD inside the running slice NAME with the slice's isolation and\n"
    "policy; exits with CMD's exit code.\n"
    "  -t, --tty          give CMD a terminal (a fresh pty relayed to ours; without\n"
    "                     a terminal on stdin, CMD runs on plain stdio, as without -t)\n"
    "  --env K=V          extra environment (repeatable)\n"
    "  --workdir DIR      working directory (default: the slice's)\n";

int cmd_exec(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, exec_help))
		return 0;
	static const struct option opts[] = {
	    {"tty", no_argument, NULL, 't'},
	    {"env", required_argument, NULL, 'e'},
	    {"workdir", required_argument, NULL, 'w'},
	    {0},
	};
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
	return do_exec(ctl, "exec", argv[optind], &o);
}

static const char shell_help[] =
    "usage: slicectl shell NAME\n\nAn interactive /bin/sh inside the running slice, on a fresh\n"
    "pty. When stdin is not a terminal, /bin/sh reads it without a pty (echo ls | slicectl\n"
    "shell NAME).\n";

int cmd_shell(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, shell_help))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage("shell", argc < 2 ? "missing slice NAME" : "one NAME only");
	static char sh[] = "/bin/sh";
	char *av[] = {sh, NULL};
	struct slice_exec_opts o = {.argv = av, .tty = true};
	return do_exec(ctl, "shell", argv[1], &o);
}

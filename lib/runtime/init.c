/*
 * init.c - the slice's PID 1 and the last steps of every workload.
 *
 * PID 1 is vslice's own code forked from the runtime; it never execs, so the
 * image needs nothing. It blocks every signal and takes them with
 * sigtimedwait: SIGCHLD reaps (any orphan, and the workload), terminal and
 * stop signals are forwarded to the workload, the timeout / lifetime
 * deadline kills the slice's processes. When the workload is done (and not
 * restarted) it writes the exit record and exits with the workload's code;
 * the kernel then kills what is left in the pid namespace.
 *
 * workload_exec() is shared by the slice's workload and `slicectl exec`: the
 * order is fixed here: session, stdio, workdir, fds 3+ close-on-exec,
 * capabilities, no_new_privs, seccomp (last: it may forbid what came
 * before), execve.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sched.h>

#include "sliver_internal.h"
#include "vslice/caps.h"
#include "vslice/util.h"

static const char default_path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* Build the workload's environment: defaults, then the user's (which win). */
static char **build_env(char **user, char *const *extra_defaults)
{
	size_t n = 0;
	for (char **e = user; e && *e; e++)
		n++;
	char **env = vs_xcalloc(n + 8, sizeof(char *));
	size_t k = 0;
	const char *defaults[] = { default_path, "HOME=/root", "TERM=xterm", NULL };
	for (const char **d = defaults; *d; d++) {
		bool overridden = false;
		size_t klen = strcspn(*d, "=") + 1;
		for (char **e = user; e && *e; e++)
			if (!strncmp(*e, *d, klen))
				overridden = true;
		if (!overridden)
			env[k++] = (char *)*d;
	}
	for (char *const *d = extra_defaults; d && *d; d++)
		env[k++] = *d;
	for (char **e = user; e && *e; e++)
		env[k++] = *e;
	env[k] = NULL;
	return env;
}

static const char *env_get(char **env, const char *key)
{
	size_t kl = strlen(key);
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, key, kl) && (*e)[kl] == '=')
			return *e + kl + 1;
	return NULL;
}

/* execvpe with the slice's PATH (not ours); returns errno of the best failure. */
static int exec_search(char **argv, char **env)
{
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, env);
		return errno;
	}
	const char *path = env_get(env, "PATH");
	if (!path)
		path = default_path + 5;
	int best = ENOENT;
	char buf[PATH_MAX];
	while (*path) {
		size_t len = strcspn(path, ":");
		if (len + strlen(argv[0]) + 2 < sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, len ? path : ".", argv[0]);
			execve(buf, argv, env);
			if (errno != ENOENT && errno != ENOTDIR)
				best = errno;
		}
		path += len;
		if (*path == ':')
			path++;
	}
	return best;
}

void workload_exec(const struct workload_params *p)
{
	char msg[VS_ERROR_MAX];
	struct vs_error err;
	vs_error_clear(&err);
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	/* A new session: the workload cannot reach our terminal (TIOCSTI). */
	setsid();
	if (p->tty && ioctl(p->stdin_fd, TIOCSCTTY, 0) < 0) {
		snprintf(msg, sizeof(msg), "controlling tty: %s", strerror(errno));
		sliver_send(p->status_fd, MSG_ERROR, errno, msg);
		_exit(125);
	}
	int fds[3] = { p->stdin_fd, p->stdout_fd, p->stderr_fd };
	/* Move sources above 2 first so dup2 order cannot clobber one. */
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0 && fds[i] < 3)
			fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			dup2(fds[i], i);
	char **env = build_env(p->env, NULL);
	const char *wd = p->workdir && *p->workdir ? p->workdir : "/";
	if (chdir(wd) < 0) {
		snprintf(msg, sizeof(msg), "workdir %s: %s", wd, strerror(errno));
		sliver_send(p->status_fd, MSG_EXEC_FAILED, 126, msg);
		_exit(126);
	}
	/* Only 0, 1, 2 survive execve (the status pipe closes on success). */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (caps_apply(p->caps, &err) < 0) {
		sliver_send(p->status_fd, MSG_ERROR, err.code, err.msg);
		_exit(125);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		sliver_send(p->status_fd, MSG_ERROR, errno, "no_new_privs");
		_exit(125);
	}
	int r = seccomp_bpf_install(p->bpf);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "seccomp: %s", strerror(-r));
		sliver_send(p->status_fd, MSG_ERROR, -r, msg);
		_exit(125);
	}
	int e = exec_search(p->argv, env);
	int code = (e == ENOENT || e == ENOTDIR) ? 127 : 126;
	snprintf(msg, sizeof(msg), "exec \"%s\": %s", p->argv[0], strerror(e));
	sliver_send(p->status_fd, MSG_EXEC_FAILED, code, msg);
	_exit(code);
}

static pid_t fork_workload(const struct sliver_config *c, int status_fd)
{
	pid_t w;
	if (c->workload_pid > 0) {
		pid_t tid = c->workload_pid;
		struct clone_args ca = {
			.exit_signal = SIGCHLD,
			.set_tid = (uint64_t)(uintptr_t)&tid,
			.set_tid_size = 1,
		};
		w = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	} else {
		w = fork();
	}
	if (w != 0)
		return w;
	if (c->workload_fn) {
		int fds[3] = { c->stdin_fd, c->stdout_fd, c->stderr_fd };
		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0 && fds[i] != i)
				dup2(fds[i], i);
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		_exit(c->workload_fn(c->workload_arg));
	}
	struct workload_params p = {
		.argv = c->argv, .env = c->env, .workdir = c->workdir,
		.stdin_fd = c->stdin_fd, .stdout_fd = c->stdout_fd, .stderr_fd = c->stderr_fd,
		.caps = c->caps, .bpf = c->bpf, .status_fd = status_fd,
	};
	workload_exec(&p);
}

static void write_exit(int fd, int code, const char *reason, unsigned restarts)
{
	if (fd < 0)
		return;
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "%d %s %u %lld\n", code, reason, restarts,
			 (long long)time(NULL));
	if (ftruncate(fd, 0) == 0)
		(void)!pwrite(fd, buf, (size_t)n, 0);
	fsync(fd);
}

static void kill_all_but_me(void)
{
	kill(-1, SIGKILL);
}

void init_main(const struct sliver_config *c, int status_fd)
{
	prctl(PR_SET_NAME, "vslice-init");
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	unsigned restarts = 0;
	time_t now = time(NULL);
	time_t run_deadline = c->timeout_secs ? now + (time_t)c->timeout_secs : 0;
	pid_t w = fork_workload(c, status_fd);
	if (w < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "fork workload: %s", strerror(errno));
		sliver_send(status_fd, MSG_ERROR, errno, msg);
		_exit(125);
	}
	close(status_fd);
	/* Our stdio is the caller's: hold nothing of it but what the workload needs. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		for (int i = 0; i < 3; i++)
			if (i != c->stdin_fd && i != c->stdout_fd && i != c->stderr_fd)
				dup2(devnull, i);
		close(devnull);
	}
	const char *reason = NULL;
	for (;;) {
		time_t deadline = 0;
		if (run_deadline)
			deadline = run_deadline;
		if (c->expires && (!deadline || c->expires < deadline))
			deadline = c->expires;
		struct timespec ts = { .tv_sec = 3600 };
		if (deadline) {
			time_t left = deadline - time(NULL);
			ts.tv_sec = left > 0 ? left : 0;
		}
		siginfo_t si;
		int sig = sigtimedwait(&all, &si, &ts);
		if (sig < 0 && errno == EAGAIN && deadline && time(NULL) >= deadline) {
			reason = (c->expires && deadline == c->expires) ? "lifetime" : "timeout";
			kill_all_but_me();
			continue;
		}
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			if (w > 0)
				kill(w, sig);
			continue;
		}
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			if (p != w)
				continue;
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			if (!reason && code != 0 && restarts < c->restart_max) {
				restarts++;
				kill_all_but_me();
				w = fork_workload(c, -1);
				if (w > 0)
					continue;
			}
			if (reason && !strcmp(reason, "timeout"))
				code = 124;
			write_exit(c->exit_fd, code,
				   reason ? reason : (WIFEXITED(st) ? "exited" : "signal"), restarts);
			_exit(code);
		}
	}
}

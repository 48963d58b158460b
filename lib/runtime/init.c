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
#include "vslice/reaper.h"
#include "vslice/trace.h"
#include "vslice/util.h"

static const char default_path[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* Build the workload's environment: defaults, then the user's (which win). */
static char **build_env(char **user, char *const *extra_defaults)
{
	size_t n = 0;
	for (char **e = user; e && *e; e++)
		n++;
	char **env = vs_xcalloc(n + 8, sizeof(char *));
	size_t k = 0;
	const char *defaults[] = {default_path, "HOME=/root", "TERM=xterm", NULL};
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

void workload_exec(const struct sliver_workload *p, int status_fd)
{
	char msg[VS_ERROR_MAX];
	struct vs_error err;
	vs_error_clear(&err);
	vs_trace("W.begin");
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	/* A new session: the workload cannot reach our terminal (TIOCSTI). */
	setsid();
	if (p->tty && ioctl(p->stdin_fd, TIOCSCTTY, 0) < 0) {
		snprintf(msg, sizeof(msg), "controlling tty: %s", strerror(errno));
		sliver_send(status_fd, MSG_ERROR, errno, msg);
		_exit(125);
	}
	int fds[3] = {p->stdin_fd, p->stdout_fd, p->stderr_fd};
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
		sliver_send(status_fd, MSG_WORKDIR_FAILED, 126, msg);
		_exit(126);
	}
	/* Only 0, 1, 2 survive execve (the status pipe closes on success). */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (caps_apply(p->caps, &err) < 0) {
		sliver_send(status_fd, MSG_ERROR, err.code, err.msg);
		_exit(125);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		sliver_send(status_fd, MSG_ERROR, errno, "no_new_privs");
		_exit(125);
	}
	int r = seccomp_bpf_install(p->bpf);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "seccomp: %s", strerror(-r));
		sliver_send(status_fd, MSG_ERROR, -r, msg);
		_exit(125);
	}
	int e = exec_search(p->argv, env);
	int code = (e == ENOENT || e == ENOTDIR) ? 127 : 126;
	snprintf(msg, sizeof(msg), "exec \"%s\": %s", p->argv[0], strerror(e));
	sliver_send(status_fd, MSG_EXEC_FAILED, code, msg);
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
		int fds[3] = {c->workload.stdin_fd, c->workload.stdout_fd, c->workload.stderr_fd};
		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0 && fds[i] != i)
				dup2(fds[i], i);
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		_exit(c->workload_fn(c->workload_arg));
	}
	workload_exec(&c->workload, status_fd);
}

/* Restart callback for the in-process reaper. */
static pid_t restart_workload(void *arg)
{
	return fork_workload(arg, -1);
}

/* Exec vslice-init as PID 1 (a few private pages instead of a copy of our
 * address space). Returns only if the exec failed. */
static void exec_small_init(const struct sliver_config *c, pid_t w)
{
	char fd[16], pid[16], dl[32], ex[32], lin[16], lfd[16], lmax[32];
	snprintf(fd, sizeof(fd), "%d", c->exit_fd);
	snprintf(pid, sizeof(pid), "%d", w);
	snprintf(dl, sizeof(dl), "%lld",
		 c->timeout_secs ? (long long)(time(NULL) + (time_t)c->timeout_secs) : 0LL);
	snprintf(ex, sizeof(ex), "%lld", (long long)c->expires);
	snprintf(lin, sizeof(lin), "%d", c->log_pipe);
	snprintf(lfd, sizeof(lfd), "%d", c->log_pipe >= 0 ? c->log_fd : -1);
	snprintf(lmax, sizeof(lmax), "%llu", (unsigned long long)c->log_max);
	char *argv[] = {(char *)"vslice-init", fd, pid, dl, ex, lin, lfd, lmax, NULL};
	char *envp[] = {NULL};
	/* Not the pipe's write end: the workload holds the only ones left. */
	int keep[] = {c->exit_fd, c->init_fd, c->log_pipe, c->log_fd};
	close_fds_except(keep, VS_ARRAY_SIZE(keep));
	int devnull = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && devnull >= 0; i++)
		if (i != devnull)
			dup2(devnull, i);
	if (devnull > 2)
		close(devnull);
	/* exit_fd and the log's fds must survive the exec; the init binary's
	 * fd need not. */
	int inherit[] = {c->exit_fd, c->log_pipe, c->log_fd};
	for (size_t i = 0; i < VS_ARRAY_SIZE(inherit); i++) {
		int fl = inherit[i] >= 0 ? fcntl(inherit[i], F_GETFD) : -1;
		if (fl >= 0)
			fcntl(inherit[i], F_SETFD, fl & ~FD_CLOEXEC);
	}
	execveat(c->init_fd, "", argv, envp, AT_EMPTY_PATH);
}

void init_main(const struct sliver_config *c, int status_fd)
{
	prctl(PR_SET_NAME, "vslice-init");
	vs_trace("P1.rootfs");
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	pid_t w = fork_workload(c, status_fd);
	if (w < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "fork workload: %s", strerror(errno));
		sliver_send(status_fd, MSG_ERROR, errno, msg);
		_exit(125);
	}
	close(status_fd);
	struct reaper r = {
	    .exit_fd = c->exit_fd,
	    .workload = w,
	    .run_deadline = c->timeout_secs ? time(NULL) + (time_t)c->timeout_secs : 0,
	    .expires = c->expires,
	    .restart_max = c->restart_max,
	    .log_in = c->log_pipe,
	    .log_fd = c->log_fd,
	    .log_max = c->log_max,
	};
	if (c->restart_max > 0 || c->workload_fn || c->init_fd < 0) {
		/* We may have to fork the workload again: stay, with its stdio. */
		r.restart = c->restart_max > 0 ? restart_workload : NULL;
		r.restart_arg = (void *)c;
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull >= 0) {
			for (int i = 0; i < 3; i++)
				if (i != c->workload.stdin_fd && i != c->workload.stdout_fd &&
				    i != c->workload.stderr_fd)
					dup2(devnull, i);
			close(devnull);
		}
		reaper_run(&r);
	}
	exec_small_init(c, w);
	reaper_run(&r); /* the exec failed: reap in place */
}

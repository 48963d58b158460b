/*
 * e13_abuse: resource abuse; the driver checks the limits and the host.
 *   e13_abuse fork HOLD_SECS    fork until refused, hold HOLD_SECS, report
 *                               "FORKED n errno"
 *   e13_abuse mem MB            touch MB MiB; past the limit it must be killed
 *   e13_abuse fd PROCS          PROCS processes open files until refused;
 *                               ENFILE (the host's file table) = escaped
 *   e13_abuse spin THREADS SECS busy threads for SECS seconds
 *   e13_abuse pty HOLD_SECS     open /dev/ptmx until refused, report
 *                               "PTYS n errno", hold them HOLD_SECS
 *   e13_abuse shm MB            fill /dev/shm with MB MiB (tmpfs is memory)
 *   e13_abuse disk MB           write MB MiB into the upper dir (/fill)
 */
#include "escape.h"
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static int do_fork(int hold)
{
	int n = 0, err = 0;
	for (;;) {
		pid_t p = fork();
		if (p == 0) {
			pause();
			_exit(0);
		}
		if (p < 0) {
			err = errno;
			break;
		}
		if (++n > 100000)
			break;
	}
	printf("FORKED %d %s\n", n, strerror(err));
	fflush(stdout);
	if (hold > 0)
		sleep((unsigned)hold);
	signal(SIGTERM, SIG_IGN);
	kill(0, SIGKILL);
	return 0;
}

static int do_mem(long mb)
{
	long done = 0;
	for (; done < mb; done++) {
		char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			printf("MMAP-FAILED at %ld MiB: %s\n", done, strerror(errno));
			return 0;
		}
		memset(p, 0x5a, 1 << 20);
		if (done % 16 == 0) {
			printf("TOUCHED %ld MiB\n", done);
			fflush(stdout);
		}
	}
	printf("ESCAPED: touched %ld MiB without being stopped\n", done);
	return 1;
}

static int do_fd(int procs)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	printf("INFO: RLIMIT_NOFILE %llu\n", (unsigned long long)rl.rlim_max);
	int pfd[2];
	if (pipe(pfd) != 0)
		return 2;
	for (int i = 0; i < procs; i++) {
		if (fork() == 0) {
			long n = 0;
			int e = 0;
			for (;;) {
				if (open("/dev/null", O_RDONLY) < 0) {
					e = errno;
					break;
				}
				n++;
			}
			dprintf(pfd[1], "%ld %d\n", n, e);
			_exit(0);
		}
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	long n;
	int e, enfile = 0, got = 0;
	while (f && fscanf(f, "%ld %d", &n, &e) == 2) {
		got++;
		printf("INFO: a process opened %ld files, then %s\n", n, strerror(e));
		if (e == ENFILE)
			enfile++;
	}
	while (wait(NULL) > 0)
		;
	if (enfile)
		printf("ESCAPED: %d processes exhausted the host's file table (ENFILE)\n", enfile);
	else
		printf("BLOCKED: %d processes stopped at their own limit\n", got);
	return enfile ? 1 : 0;
}

static volatile int stop;
static void *spinner(void *a)
{
	volatile unsigned long x = 0;
	while (!stop)
		x++;
	return a;
}

static int do_spin(int threads, int secs)
{
	pthread_t t[64];
	if (threads > 64)
		threads = 64;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, spinner, NULL);
	printf("SPINNING %d\n", threads);
	fflush(stdout);
	sleep((unsigned)secs);
	stop = 1;
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("CPU %ld.%06ld\n", (long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec),
	       (long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) % 1000000);
	return 0;
}

static int fill(const char *path, long mb)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		printf("BLOCKED: open %s: %s\n", path, strerror(errno));
		return 0;
	}
	static char buf[1 << 20];
	memset(buf, 0x5a, sizeof(buf));
	long done = 0;
	for (; done < mb; done++) {
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			printf("BLOCKED: %s stopped at %ld MiB: %s\n", path, done, strerror(errno));
			close(fd);
			unlink(path);
			return 0;
		}
	}
	close(fd);
	printf("FILLED %s %ld MiB\n", path, done);
	unlink(path);
	return 1;
}

static int do_pty(int hold)
{
	int n = 0, err = 0;
	for (;;) {
		int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
			break;
		}
		if (++n >= 100000)
			break;
	}
	printf("PTYS %d %s\n", n, strerror(err));
	fflush(stdout);
	if (hold > 0)
		sleep((unsigned)hold);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && !strcmp(argv[1], "fork"))
		return do_fork(atoi(argv[2]));
	if (argc > 2 && !strcmp(argv[1], "mem"))
		return do_mem(atol(argv[2]));
	if (argc > 2 && !strcmp(argv[1], "fd"))
		return do_fd(atoi(argv[2]));
	if (argc > 3 && !strcmp(argv[1], "spin"))
		return do_spin(atoi(argv[2]), atoi(argv[3]));
	if (argc > 2 && !strcmp(argv[1], "pty"))
		return do_pty(atoi(argv[2]));
	if (argc > 2 && !strcmp(argv[1], "shm"))
		return fill("/dev/shm/fill", atol(argv[2]));
	if (argc > 2 && !strcmp(argv[1], "disk"))
		return fill("/fill", atol(argv[2]));
	fprintf(stderr, "usage: e13_abuse fork|mem|fd|spin|shm|disk ...\n");
	return 2;
}

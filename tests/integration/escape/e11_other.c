/*
 * e11_other: another slice's files and objects.
 *   e11_other owner MARK SECS   (slice A) leaves traces and waits SECS:
 *       /secret-MARK (0600), abstract unix socket @vslice-esc-MARK, SysV shm
 *       and message queue with a key from MARK, /dev/shm/vslice-MARK, and
 *       rewrites /escape/shared.txt (a file of the shared image)
 *   e11_other intruder MARK     (slice B) must reach none of them, must read
 *       the image's pristine /escape/shared.txt, must not see A's processes.
 */
#include "escape.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>

static key_t key_of(const char *m, int salt)
{
	unsigned h = 5381u + (unsigned)salt;
	for (const char *p = m; *p; p++)
		h = h * 33u + (unsigned char)*p;
	return (key_t)(h & 0x7fffffff);
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *m)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "vslice-esc-%s", m);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int owner(const char *m, int secs)
{
	char p[256];
	snprintf(p, sizeof(p), "/secret-%s", m);
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, m, strlen(m)) < 0)
		info("write %s: %s", p, strerror(errno));
	if (fd >= 0)
		close(fd);
	struct sockaddr_un a;
	socklen_t al = abstract_addr(&a, m);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, al) != 0 || listen(s, 4) != 0)
		info("abstract socket: %s", strerror(errno));
	int shm = shmget(key_of(m, 1), 4096, IPC_CREAT | 0666);
	if (shm >= 0) {
		char *x = shmat(shm, NULL, 0);
		if (x != (void *)-1)
			snprintf(x, 4096, "%s", m);
	} else
		info("shmget: %s", strerror(errno));
	if (msgget(key_of(m, 2), IPC_CREAT | 0666) < 0)
		info("msgget: %s", strerror(errno));
	snprintf(p, sizeof(p), "/dev/shm/vslice-%s", m);
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
	if (fd >= 0)
		close(fd);
	else
		info("%s: %s", p, strerror(errno));
	fd = open("/escape/shared.txt", O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd >= 0) {
		dprintf(fd, "tainted-%s\n", m);
		close(fd);
	} else
		info("rewrite /escape/shared.txt: %s", strerror(errno));
	printf("READY\n");
	fflush(stdout);
	sleep((unsigned)secs);
	return 0;
}

static int intruder(const char *m)
{
	esc_init();
	char p[256];
	snprintf(p, sizeof(p), "/secret-%s", m);
	if (access(p, F_OK) == 0)
		escaped("the other slice's %s is visible here", p);
	else
		blocked("the other slice's /secret-... is not visible: %s", strerror(errno));
	struct sockaddr_un a;
	socklen_t al = abstract_addr(&a, m);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, (struct sockaddr *)&a, al) == 0)
		escaped("connected to the other slice's abstract unix socket");
	else
		blocked("the other slice's abstract unix socket: %s", strerror(errno));
	if (s >= 0)
		close(s);
	int id = shmget(key_of(m, 1), 0, 0);
	if (id >= 0) {
		char *x = shmat(id, NULL, SHM_RDONLY);
		escaped("the other slice's SysV shm segment is reachable%s",
			x != (void *)-1 && strstr(x, m) ? " and readable" : "");
	} else
		blocked("the other slice's SysV shm: %s", strerror(errno));
	if (msgget(key_of(m, 2), 0) >= 0)
		escaped("the other slice's SysV message queue is reachable");
	else
		blocked("the other slice's SysV message queue: %s", strerror(errno));
	snprintf(p, sizeof(p), "/dev/shm/vslice-%s", m);
	if (access(p, F_OK) == 0)
		escaped("the other slice's %s is visible", p);
	else
		blocked("the other slice's /dev/shm file: %s", strerror(errno));
	char buf[256];
	if (read_file("/escape/shared.txt", buf, sizeof(buf)) >= 0) {
		if (strstr(buf, "tainted"))
			escaped("the other slice's write to the shared image shows here: %s", buf);
		else
			blocked("the shared image file is pristine here");
	} else
		info("read /escape/shared.txt: %s", strerror(errno));
	/* The other slice's processes. */
	DIR *d = opendir("/proc");
	int seen = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int pid = atoi(e->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		char cp[64], cl[1024];
		snprintf(cp, sizeof(cp), "/proc/%d/cmdline", pid);
		ssize_t n = read_file(cp, cl, sizeof(cl));
		for (ssize_t i = 0; i < n; i++)
			if (!cl[i])
				cl[i] = ' ';
		if (n > 0 && strstr(cl, m) && strstr(cl, "owner"))
			seen++;
	}
	if (d)
		closedir(d);
	if (seen)
		escaped("the other slice's process is visible in /proc");
	else
		blocked("the other slice's processes are not visible");
	return esc_finish();
}

int main(int argc, char **argv)
{
	if (argc > 3 && strcmp(argv[1], "owner") == 0)
		return owner(argv[2], atoi(argv[3]));
	if (argc > 2 && strcmp(argv[1], "intruder") == 0)
		return intruder(argv[2]);
	fprintf(stderr, "usage: e11_other owner MARK SECS | intruder MARK\n");
	return 2;
}

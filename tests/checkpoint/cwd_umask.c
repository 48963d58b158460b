/* cwd_umask: cwd, umask, rlimits, directory fd with offset, cmdline and
 * environment survive. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(int argc, char **argv)
{
	test_init();
	char argv0[256];
	snprintf(argv0, sizeof(argv0), "%s", argv[0]);
	char dir[] = "/tmp/ckpt-cwd-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	CHECK(chdir(dir) == 0, "chdir");
	for (int i = 0; i < 5; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		close(open(n, O_CREAT | O_WRONLY, 0600));
	}
	umask(0027);
	struct rlimit rl = { 123, 456 };
	setrlimit(RLIMIT_NOFILE, &rl);
	struct rlimit stk = { 4 << 20, 64 << 20 };
	setrlimit(RLIMIT_STACK, &stk);
	setenv("CKPT_TEST_ENV", "hello-env", 1);
	int dfd = open(".", O_RDONLY | O_DIRECTORY);
	DIR *d = fdopendir(dup(dfd));
	readdir(d);
	readdir(d);
	long pos = telldir(d);
	int dumpable = prctl(PR_GET_DUMPABLE);
	test_daemon();
	test_waitsig();
	CHECK(prctl(PR_GET_DUMPABLE) == dumpable, "dumpable %d -> %d", dumpable, prctl(PR_GET_DUMPABLE));
	char cwd[256];
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, dir), "cwd %s", cwd);
	mode_t m = umask(0);
	CHECK(m == 0027, "umask %o", m);
	getrlimit(RLIMIT_NOFILE, &rl);
	CHECK(rl.rlim_cur == 123 && rl.rlim_max == 456, "nofile %lu/%lu", rl.rlim_cur, rl.rlim_max);
	getrlimit(RLIMIT_STACK, &stk);
	CHECK(stk.rlim_cur == 4 << 20, "stack rlimit");
	CHECK(telldir(d) == pos, "dir offset");
	CHECK(!strcmp(getenv("CKPT_TEST_ENV"), "hello-env"), "env");
	FILE *f = fopen("/proc/self/cmdline", "r");
	char cmd[512] = "";
	size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
	CHECK(n > 0 && !strcmp(cmd, argv0), "cmdline '%s' != '%s'", cmd, argv0);
	CHECK(argc == 1 && !strcmp(argv[0], argv0), "argv");
	f = fopen("/proc/self/environ", "r");
	char env[8192] = "";
	n = fread(env, 1, sizeof(env) - 1, f);
	CHECK(n > 0, "environ empty");
	for (int i = 0; i < 5; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "f%d", i);
		unlink(nm);
	}
	rmdir(dir);
	pass();
}

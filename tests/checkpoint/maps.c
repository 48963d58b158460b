/* maps: private anon, shared anon shared with a child, mprotect'ed and
 * PROT_NONE areas, a private file mapping with COWed pages, a big sparse
 * area; contents and protections are the same after restore. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "zdtm.h"

static char *find_perm(void *addr, char *out)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long a = (unsigned long)addr;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perm[8];
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perm) == 3 && a >= s && a < e) {
			strcpy(out, perm);
			fclose(f);
			return out;
		}
	}
	if (f)
		fclose(f);
	strcpy(out, "none");
	return out;
}

int main(void)
{
	test_init();
	size_t pg = 4096;
	char *priv = mmap(NULL, 64 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *shared = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *ro = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *none = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *sparse = mmap(NULL, 256 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(priv != MAP_FAILED && shared != MAP_FAILED && ro != MAP_FAILED && none != MAP_FAILED && sparse != MAP_FAILED, "mmap");
	for (size_t i = 0; i < 64 * pg; i++)
		priv[i] = (char)(i * 7);
	memset(shared, 's', 16 * pg);
	memset(ro, 'r', 4 * pg);
	memset(none, 'n', 4 * pg);
	mprotect(ro, 4 * pg, PROT_READ);
	mprotect(none, 4 * pg, PROT_NONE);
	for (size_t i = 0; i < 256; i++)
		sparse[i * (1 << 20)] = (char)i;
	/* private file mapping of our own binary with one COWed page */
	int fd = open("/proc/self/exe", O_RDONLY);
	char *fm = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(fm != MAP_FAILED, "mmap file");
	close(fd);
	CHECK(fm[1] == 'E', "ELF magic");
	fm[pg + 5] = 'X';
	pid_t c = fork();
	if (c == 0) {
		test_waitsig();
		/* the child sees the parent's write to shared memory */
		for (int i = 0; i < 200 && shared[0] != 'P'; i++)
			usleep(10000);
		_exit(shared[0] == 'P' ? 0 : 1);
	}
	char perm_before[4][8];
	find_perm(priv, perm_before[0]);
	find_perm(ro, perm_before[1]);
	find_perm(none, perm_before[2]);
	find_perm(shared, perm_before[3]);
	test_daemon();
	test_waitsig();
	for (size_t i = 0; i < 64 * pg; i++)
		CHECK(priv[i] == (char)(i * 7), "private anon byte %zu", i);
	for (size_t i = 1; i < 16 * pg; i++)
		CHECK(shared[i] == 's', "shared byte %zu", i);
	for (size_t i = 0; i < 256; i++)
		CHECK(sparse[i * (1 << 20)] == (char)i, "sparse %zu", i);
	CHECK(ro[10] == 'r', "read-only content");
	CHECK(fm[1] == 'E' && fm[pg + 5] == 'X', "file mapping content");
	char perm[8];
	CHECK(!strcmp(find_perm(priv, perm), perm_before[0]), "priv perms %s", perm);
	CHECK(!strcmp(find_perm(ro, perm), perm_before[1]), "ro perms %s", perm);
	CHECK(!strcmp(find_perm(none, perm), perm_before[2]), "none perms %s", perm);
	CHECK(!strcmp(find_perm(shared, perm), perm_before[3]), "shared perms %s", perm);
	mprotect(none, 4 * pg, PROT_READ);
	CHECK(none[5] == 'n', "PROT_NONE content");
	shared[0] = 'P';
	kill(c, SIGTERM);
	int st;
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "shared memory no longer shared with child (%#x)", st);
	pass();
}

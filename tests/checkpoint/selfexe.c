/* selfexe: /proc/self/exe, the [heap]/[stack] names and the brk area are
 * the same after restore (PR_SET_MM_MAP with the exe fd). */
#include <stdint.h>
#include "zdtm.h"

static int has_map(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int found = 0;
	while (f && fgets(line, sizeof(line), f))
		found |= strstr(line, name) != NULL;
	if (f)
		fclose(f);
	return found;
}

int main(void)
{
	test_init();
	char exe[512], exe2[512];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	CHECK(n > 0, "readlink");
	exe[n] = 0;
	void *brk0 = sbrk(0);
	char *p = sbrk(1 << 16);
	CHECK(p != (void *)-1, "sbrk");
	memset(p, 'h', 1 << 16);
	test_daemon();
	test_waitsig();
	n = readlink("/proc/self/exe", exe2, sizeof(exe2) - 1);
	CHECK(n > 0, "readlink after");
	exe2[n] = 0;
	CHECK(!strcmp(exe, exe2), "exe %s -> %s", exe, exe2);
	CHECK(has_map("[stack]"), "no [stack]");
	CHECK(has_map("[heap]"), "no [heap]");
	CHECK(sbrk(0) == (char *)brk0 + (1 << 16), "brk moved");
	CHECK(p[100] == 'h', "heap content");
	char *q = sbrk(4096);
	CHECK(q != (void *)-1, "brk cannot grow after restore");
	q[10] = 1;
	pass();
}

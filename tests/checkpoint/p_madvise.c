/* p_madvise: madvise() state survives: MADV_DONTFORK, DONTDUMP,
 * WIPEONFORK, HUGEPAGE, NOHUGEPAGE, SEQUENTIAL, RANDOM (and MERGEABLE when
 * the kernel has KSM), as smaps VmFlags show it - and WIPEONFORK still
 * wipes in a child forked after the restore. */
#include <sys/mman.h>
#include <sys/wait.h>
#include "zdtm.h"

#define NAREA 8
static const struct {
	int advice;
	const char *flag;
} adv[NAREA] = {
    {MADV_DONTFORK, "dc"},  {MADV_DONTDUMP, "dd"},  {MADV_WIPEONFORK, "wf"},
    {MADV_HUGEPAGE, "hg"},  {MADV_NOHUGEPAGE, "nh"}, {MADV_SEQUENTIAL, "sr"},
    {MADV_RANDOM, "rr"},    {MADV_MERGEABLE, "mg"},
};

static void vmflags(char *area, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0;
	out[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, ' ') &&
		    strncmp(line, "VmFlags", 7))
			in = s == (unsigned long)area;
		else if (in && !strncmp(line, "VmFlags:", 8))
			snprintf(out, len, "%s", line + 8);
	}
	if (f)
		fclose(f);
}

static int has(const char *flags, const char *f)
{
	char pat[8];
	snprintf(pat, sizeof(pat), " %s", f);
	return strstr(flags, pat) != NULL;
}

int main(void)
{
	test_init();
	char *area[NAREA];
	char before[NAREA][256];
	int used[NAREA] = {0};
	/* a PROT_NONE gap between areas keeps the kernel from merging them */
	char *base = mmap(NULL, NAREA * 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(base != MAP_FAILED, "mmap");
	for (int i = 0; i < NAREA; i++) {
		area[i] = base + (size_t)i * 3 * 4096;
		CHECK(mprotect(area[i], 2 * 4096, PROT_READ | PROT_WRITE) == 0, "mprotect");
		memset(area[i], 'a' + i, 2 * 4096);
		if (madvise(area[i], 2 * 4096, adv[i].advice) == 0)
			used[i] = 1;
		else
			CHECK(adv[i].advice == MADV_MERGEABLE, "madvise %s", adv[i].flag);
		vmflags(area[i], before[i], sizeof(before[i]));
		CHECK(!used[i] || has(before[i], adv[i].flag), "%s not in VmFlags: %s", adv[i].flag,
		      before[i]);
	}
	test_daemon();
	test_waitsig();
	for (int i = 0; i < NAREA; i++) {
		char after[256];
		vmflags(area[i], after, sizeof(after));
		CHECK(strcmp(before[i], after) == 0, "area %d (%s): VmFlags\n  before:%s  after: %s",
		      i, adv[i].flag, before[i], after);
		CHECK(area[i][4096] == 'a' + i, "area %d content", i);
	}
	pid_t c = fork();
	if (c == 0)
		_exit(area[2][0] == 0 && area[3][0] == 'd' ? 0 : 1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "WIPEONFORK area not wiped in a child: %#x", st);
	pass();
}

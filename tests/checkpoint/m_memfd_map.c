/* m_memfd_map: MAP_SHARED mappings of a memfd share pages with its fd again
 * after restore (writes through one are seen through the other), at an
 * offset too, and a memfd only mapped (its fd closed) keeps its name and
 * content; a MAP_PRIVATE mapping keeps its own (copied) pages. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "zdtm.h"

static int mapped_name(void *addr, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int found = -1;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s;
		int pos = 0;
		if (sscanf(line, "%lx-%*x %*s %*x %*s %*u %n", &s, &pos) < 1 || s != (unsigned long)addr)
			continue;
		snprintf(out, len, "%s", line + pos);
		out[strcspn(out, "\n")] = 0;
		found = 0;
	}
	if (f)
		fclose(f);
	return found;
}

int main(void)
{
	test_init();
	long pg = sysconf(_SC_PAGESIZE);
	int m = memfd_create("ckpt-map", MFD_ALLOW_SEALING);
	CHECK(m >= 0 && ftruncate(m, 4 * pg) == 0, "memfd");
	char *s = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	char *s2 = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, m, 2 * pg);
	char *pv = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
	CHECK(s != MAP_FAILED && s2 != MAP_FAILED && pv != MAP_FAILED, "mmap");
	strcpy(s, "shared page 0");
	strcpy(s + 2 * pg, "shared page 2");
	CHECK(pv[0] == 's', "private mapping sees the file");
	strcpy(pv, "private copy");
	/* a memfd reachable through its mapping only */
	int o = memfd_create("only-mapped", 0);
	CHECK(o >= 0 && ftruncate(o, pg) == 0, "memfd 2");
	char *om = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, o, 0);
	CHECK(om != MAP_FAILED, "mmap 2");
	strcpy(om, "only mapped");
	close(o);
	test_daemon();
	test_waitsig();
	char buf[32] = "";
	CHECK(!strcmp(s, "shared page 0") && !strcmp(s2, "shared page 2"), "content: %s / %s", s, s2);
	CHECK(pread(m, buf, 14, 0) == 14 && !strcmp(buf, "shared page 0"), "fd content: %s", buf);
	strcpy(s, "after restore");
	CHECK(pread(m, buf, 14, 0) == 14 && !strcmp(buf, "after restore"),
	      "write through the mapping not seen through the fd: %s", buf);
	CHECK(pwrite(m, "via fd", 7, 2 * pg) == 7 && !strcmp(s2, "via fd") && !strcmp(s + 2 * pg, "via fd"),
	      "write through the fd not seen through the mappings: %s / %s", s2, s + 2 * pg);
	CHECK(!strcmp(pv, "private copy"), "private mapping: %s", pv);
	char name[256];
	CHECK(mapped_name(om, name, sizeof(name)) == 0 && !strcmp(name, "/memfd:only-mapped (deleted)"),
	      "only mapped memfd: %s", name);
	CHECK(!strcmp(om, "only mapped"), "only mapped content: %s", om);
	CHECK(mapped_name(s, name, sizeof(name)) == 0 && !strcmp(name, "/memfd:ckpt-map (deleted)"),
	      "mapping name: %s", name);
	struct stat st;
	CHECK(fstat(m, &st) == 0 && st.st_size == 4 * pg, "size %ld", (long)st.st_size);
	pass();
}

/* dirtymem MiB: dirty MiB of anonymous memory, say READY, keep touching one
 * byte per page slowly until SIGTERM, verify the pattern, PASS. Used by
 * tests/bench/ckpt.sh (not a zdtm test: it takes an argument). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "../zdtm.h"

int main(int argc, char **argv)
{
	test_init();
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	size_t len = mib << 20;
	uint64_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap %zu MiB", mib);
	for (size_t i = 0; i < len / 8; i++)
		m[i] = i * 0x9e3779b97f4a7c15ull;
	test_daemon();
	test_waitsig();
	for (size_t i = 0; i < len / 8; i++)
		CHECK(m[i] == i * 0x9e3779b97f4a7c15ull, "word %zu differs", i);
	pass();
}

/* counter: anon memory, heap, stack and a regular file; after the restore
 * the counter continues from where it was (continuity), never restarts. */
#include <fcntl.h>
#include <time.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	volatile unsigned long stack_counter = 0;
	unsigned long *heap = malloc(1 << 20);
	memset(heap, 0x5a, 1 << 20);
	char path[] = "/tmp/ckpt-counter-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	unlink(path);
	test_daemon();
	unsigned long max_before = 0;
	while (test_go()) {
		stack_counter++;
		heap[stack_counter % 1000] = stack_counter;
		if (pwrite(fd, (void *)&stack_counter, sizeof(stack_counter), 0) != sizeof(stack_counter))
			fail("pwrite");
		unsigned long back = 0;
		if (pread(fd, &back, sizeof(back), 0) != sizeof(back) || back != stack_counter)
			fail("file content %lu != %lu", back, stack_counter);
		if (back < max_before)
			fail("counter went backwards");
		max_before = back;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	CHECK(stack_counter > 10, "counter only reached %lu", stack_counter);
	for (int i = 1000; i < (1 << 20) / 8; i++)
		CHECK(heap[i] == 0x5a5a5a5a5a5a5a5aul, "heap corrupted at %d", i);
	printf("counter reached %lu\n", stack_counter);
	pass();
}

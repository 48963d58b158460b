/* busyloop: a CPU-bound loop with no syscalls keeps going across C/R. */
#include "zdtm.h"

static volatile unsigned long n;

int main(void)
{
	test_init();
	test_daemon();
	unsigned long check = 0;
	while (test_go()) {
		n++;
		check += n;
	}
	CHECK(check == n * (n + 1) / 2, "sum mismatch: %lu vs %lu", check, n * (n + 1) / 2);
	pass();
}

/* fpu: SSE/AVX registers and MXCSR survive a checkpoint taken while a
 * floating point loop runs. */
#include <immintrin.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	_mm_setcsr(_mm_getcsr() | 0x6000); /* round toward zero */
	test_daemon();
	volatile double acc = 0;
	unsigned long i = 0;
	double x = 1.0;
	while (test_go()) {
		x = x * 1.0000001 + 0.5;
		if (x > 1e6)
			x = 1.0;
		acc += x;
		i++;
	}
	CHECK((_mm_getcsr() & 0x6000) == 0x6000, "MXCSR rounding mode lost");
	/* replay the same computation and compare */
	double y = 1.0, acc2 = 0;
	for (unsigned long k = 0; k < i; k++) {
		y = y * 1.0000001 + 0.5;
		if (y > 1e6)
			y = 1.0;
		acc2 += y;
	}
	CHECK(acc2 == acc && y == x, "fp state diverged");
	pass();
}

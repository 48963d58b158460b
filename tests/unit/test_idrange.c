/* Per-slice id ranges: never shared, reclaimed only when the owner is gone. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vslice/idrange.h"
#include "vslice/util.h"

static char tmp[64];
static char claims[128];

static int setup(void **state)
{
	snprintf(tmp, sizeof(tmp), "/tmp/vslice-idrange.XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	snprintf(claims, sizeof(claims), "%s/claims", tmp);
	return 0;
}

static int teardown(void **state)
{
	struct vs_error err;
	return vs_rm_rf(tmp, &err);
}

static void test_lowest_free(void **state)
{
	uint8_t bm[4] = {0};
	assert_int_equal(idrange_lowest_free(bm, 32), 0);
	bm[0] = 0xff;
	assert_int_equal(idrange_lowest_free(bm, 32), 8);
	bm[1] = 0xfb;
	assert_int_equal(idrange_lowest_free(bm, 32), 10);
	memset(bm, 0xff, sizeof(bm));
	assert_int_equal(idrange_lowest_free(bm, 32), -1);
	bm[3] = 0x7f;
	assert_int_equal(idrange_lowest_free(bm, 32), 31);
}

static char *owner(int i)
{
	char *p = vs_xasprintf("%s/slice%d", tmp, i);
	mkdir(p, 0700);
	return p;
}

static void test_claims_distinct_and_released(void **state)
{
	struct vs_error err;
	uint32_t b[3];
	char *o[3];
	for (int i = 0; i < 3; i++) {
		o[i] = owner(i);
		assert_int_equal(idrange_claim(claims, o[i], true, &b[i], &err), 0);
		assert_true(b[i] >= IDRANGE_FIRST);
		assert_int_equal((b[i] - IDRANGE_FIRST) % IDRANGE_SIZE, 0);
	}
	assert_int_not_equal(b[0], b[1]);
	assert_int_not_equal(b[1], b[2]);
	assert_int_not_equal(b[0], b[2]);
	/* A release by someone who does not own it changes nothing. */
	assert_int_equal(idrange_release(claims, o[0], b[1], &err), 0);
	uint32_t again;
	char *o3 = owner(3);
	assert_int_equal(idrange_claim(claims, o3, true, &again, &err), 0);
	assert_true(again != b[0] && again != b[1] && again != b[2]);
	/* The owner's release frees the slot for the next claim. */
	assert_int_equal(idrange_release(claims, o[1], b[1], &err), 0);
	char *o4 = owner(4);
	assert_int_equal(idrange_claim(claims, o4, true, &again, &err), 0);
	assert_int_equal(again, b[1]);
	assert_int_not_equal(idrange_release(claims, o4, 12345, &err), 0);
	for (int i = 0; i < 3; i++)
		free(o[i]);
	free(o3);
	free(o4);
}

/* A pooled sandbox's range becomes the slice's (idrange_transfer): only
 * from its owner, and afterwards only the new owner holds it. */
static void test_transfer(void **state)
{
	struct vs_error err;
	uint32_t b;
	char *pool = owner(0), *slice = owner(1), *other = owner(2);
	assert_int_equal(idrange_claim(claims, pool, false, &b, &err), 0);
	assert_int_equal(idrange_transfer(claims, other, slice, b, false, &err), -EPERM);
	assert_true(idrange_owned(claims, pool, b));
	assert_int_equal(idrange_transfer(claims, pool, slice, b, true, &err), 0);
	assert_true(idrange_owned(claims, slice, b));
	assert_false(idrange_owned(claims, pool, b));
	/* a shorter owner than before: nothing of the old one is left */
	assert_int_equal(idrange_transfer(claims, slice, "/s", b, false, &err), 0);
	assert_true(idrange_owned(claims, "/s", b));
	assert_int_equal(idrange_transfer(claims, "/s", slice, 12345, false, &err), -EINVAL);
	free(pool);
	free(slice);
	free(other);
}

static void test_stale_claim_reclaimed(void **state)
{
	struct vs_error err;
	/* Every slot taken: slot 7 by a slice whose dir is gone (a crashed test
	 * root), the others by live owners. */
	char *live = owner(1);
	assert_int_equal(vs_mkdir_p(claims, 0700, &err), 0);
	for (uint32_t i = 0; i < IDRANGE_SLOTS; i++) {
		char *p = vs_xasprintf("%s/%u", claims, i);
		char *line =
		    vs_xasprintf("%s\n", i == 7 ? "/nonexistent/vslice/slices/gone" : live);
		FILE *f = fopen(p, "w");
		assert_non_null(f);
		fputs(line, f);
		fclose(f);
		free(p);
		free(line);
	}
	char *o2 = owner(11);
	uint32_t b;
	assert_int_equal(idrange_claim(claims, o2, true, &b, &err), 0);
	assert_int_equal(b, IDRANGE_FIRST + 7 * IDRANGE_SIZE);
	/* Now truly full: a clear error, nothing overwritten. */
	char *o3 = owner(12);
	assert_int_equal(idrange_claim(claims, o3, true, &b, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "in use"));
	assert_true(idrange_owned(claims, o2, IDRANGE_FIRST + 7 * IDRANGE_SIZE));
	free(live);
	free(o2);
	free(o3);
}

static void test_concurrent_claims_never_collide(void **state)
{
	/* 8 processes claim 16 ranges each at once; all 128 must differ. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	for (int p = 0; p < 8; p++) {
		if (fork() == 0) {
			for (int i = 0; i < 16; i++) {
				struct vs_error err;
				uint32_t b;
				char *o = owner(100 + p * 16 + i);
				if (idrange_claim(claims, o, true, &b, &err) < 0)
					b = 0;
				(void)!write(pfd[1], &b, sizeof(b));
			}
			_exit(0);
		}
	}
	close(pfd[1]);
	for (int p = 0; p < 8; p++)
		wait(NULL);
	uint32_t got[128];
	size_t n = 0;
	while (n < 128 && read(pfd[0], &got[n], sizeof(got[n])) == sizeof(got[n]))
		n++;
	close(pfd[0]);
	assert_int_equal(n, 128);
	for (size_t i = 0; i < n; i++) {
		assert_int_not_equal(got[i], 0);
		for (size_t j = i + 1; j < n; j++)
			assert_int_not_equal(got[i], got[j]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lowest_free),
	    cmocka_unit_test_setup_teardown(test_claims_distinct_and_released, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_claim_reclaimed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_transfer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_claims_never_collide, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

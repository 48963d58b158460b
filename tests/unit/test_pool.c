/* The warm pool's size setting: VSLICE_POOL, else <root>/pool/size. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "vslice/pool.h"
#include "vslice/util.h"

static char root[64];

static int setup(void **state)
{
	(void)state;
	unsetenv("VSLICE_POOL");
	snprintf(root, sizeof(root), "/tmp/vslice-pool.XXXXXX");
	if (!mkdtemp(root))
		return -1;
	char pd[128];
	snprintf(pd, sizeof(pd), "%s/pool", root);
	return mkdir(pd, 0700);
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("VSLICE_POOL");
	struct vs_error err;
	return vs_rm_rf(root, &err);
}

static void put_size(const char *text)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/pool/size", root);
	struct vs_error err;
	assert_int_equal(vs_write_file_replace(p, text, strlen(text), 0600, false, &err), 0);
}

static void test_nothing_set_is_off(void **state)
{
	(void)state;
	unsigned n = 99;
	struct vs_error err;
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, 0);
}

static void test_file_is_the_size(void **state)
{
	(void)state;
	unsigned n = 0;
	struct vs_error err;
	put_size("3\n");
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, 3);
	put_size("0");
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, 0);
}

static void test_env_wins_over_file(void **state)
{
	(void)state;
	unsigned n = 0;
	struct vs_error err;
	put_size("3\n");
	setenv("VSLICE_POOL", "5", 1);
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, 5);
	/* Set but empty: as if unset. */
	setenv("VSLICE_POOL", "", 1);
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, 3);
}

static void test_bad_values_name_their_source(void **state)
{
	(void)state;
	static const char *const bad[] = {"lots\n", "-1\n", "257\n", "3\n\n",
					  "\n",	    " 3\n", "3 4\n"};
	unsigned n = 7;
	struct vs_error err;
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
		put_size(bad[i]);
		assert_int_equal(pool_size_setting(root, &n, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "/pool/size"));
		assert_int_equal(n, 0);
	}
	setenv("VSLICE_POOL", "x", 1);
	assert_int_equal(pool_size_setting(root, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "VSLICE_POOL"));
	char max[16];
	snprintf(max, sizeof(max), "%d", POOL_SIZE_MAX);
	setenv("VSLICE_POOL", max, 1);
	assert_int_equal(pool_size_setting(root, &n, &err), 0);
	assert_int_equal(n, POOL_SIZE_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nothing_set_is_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_is_the_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_wins_over_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_values_name_their_source, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

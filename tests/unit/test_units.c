/* Sizes, durations, cpus and names: what users type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vslice/units.h"

static void test_sizes(void **state)
{
	struct vs_error err;
	uint64_t v;
	assert_int_equal(vs_parse_size("512K", &v, &err), 0);
	assert_int_equal(v, 512 * 1024);
	assert_int_equal(vs_parse_size("256M", &v, &err), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(vs_parse_size("1G", &v, &err), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(vs_parse_size("2t", &v, &err), 0);
	assert_int_equal(v, 2ull << 40);
	assert_int_equal(vs_parse_size("4096", &v, &err), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(vs_parse_size("256MiB", &v, &err), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(vs_parse_size("64mb", &v, &err), 0);
	assert_int_equal(v, 64ull << 20);
	const char *bad[] = {"",
			     "lots",
			     "-1M",
			     "1.5G",
			     "1X",
			     "M",
			     " 1M",
			     "1M ",
			     "1MM",
			     "99999999999999999999",
			     "17179869184T"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_not_equal(vs_parse_size(bad[i], &v, &err), 0);
		assert_true(strlen(err.msg) > 0);
	}
	assert_int_equal(vs_parse_size("lots", &v, &err), -22);
	assert_non_null(strstr(err.msg, "\"lots\""));
	assert_non_null(strstr(err.msg, "256M"));
}

static void test_durations(void **state)
{
	struct vs_error err;
	uint64_t v;
	struct {
		const char *s;
		uint64_t v;
	} ok[] = {
	    {"30s", 30},       {"10m", 600}, {"2h", 7200}, {"14d", 14 * 86400},
	    {"1w", 7 * 86400}, {"45", 45},   {"0s", 0},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(vs_parse_duration(ok[i].s, &v, &err), 0);
		assert_int_equal(v, ok[i].v);
	}
	const char *bad[] = {"", "d", "1y", "-1s", "1.5h", "10 m", "999999999999999d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(vs_parse_duration(bad[i], &v, &err), 0);
}

static void test_cpus(void **state)
{
	struct vs_error err;
	uint64_t v;
	struct {
		const char *s;
		uint64_t v;
	} ok[] = {
	    {"0.5", 500}, {"2", 2000}, {"1.25", 1250}, {".5", 500}, {"0.001", 1}, {"4096", 4096000},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(vs_parse_cpus(ok[i].s, &v, &err), 0);
		assert_int_equal(v, ok[i].v);
	}
	const char *bad[] = {"", "0", "0.0", "2.", "1.2345", "-1", "abc", "4097", "1,5", "."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(vs_parse_cpus(bad[i], &v, &err), 0);
}

static void test_names(void **state)
{
	assert_true(vs_name_valid("a"));
	assert_true(vs_name_valid("princeton_exp1"));
	assert_true(vs_name_valid("web-1"));
	char longest[64];
	memset(longest, 'a', 63);
	longest[63] = '\0';
	assert_true(vs_name_valid(longest));
	char toolong[65];
	memset(toolong, 'a', 64);
	toolong[64] = '\0';
	assert_false(vs_name_valid(toolong));
	const char *bad[] = {"", "Bad Name!", "1abc", "-a", "_a", "a/b", "..", "a.b", "A", NULL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(vs_name_valid(bad[i]));
	struct vs_error err;
	assert_int_equal(vs_check_name("slice", "Bad Name!", &err), -22);
	assert_non_null(strstr(err.msg, "invalid slice name"));
}

static void test_format(void **state)
{
	char buf[32];
	assert_string_equal(vs_format_size(256ull << 20, buf, sizeof(buf)), "256M");
	assert_string_equal(vs_format_size(1000, buf, sizeof(buf)), "1000");
	assert_string_equal(vs_format_size(3ull << 30, buf, sizeof(buf)), "3G");
	assert_string_equal(vs_format_duration(14 * 86400, buf, sizeof(buf)), "14d");
	assert_string_equal(vs_format_duration(90, buf, sizeof(buf)), "1m30s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sizes),  cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_cpus),   cmocka_unit_test(test_names),
	    cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* spec.json / state.json: round trip, and tampered files refused naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/node/node_internal.h"
#include "vslice/idrange.h"
#include "vslice/util.h"

static void fill(struct slice_spec *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "web1");
	snprintf(s->image, sizeof(s->image), "busybox");
	snprintf(s->hostname, sizeof(s->hostname), "web1");
	s->policy = vs_xstrdup("default");
	s->workdir = vs_xstrdup("/srv");
	s->cpu_millis = 500;
	s->memory_bytes = 256u << 20;
	s->pids_max = 128;
	s->disk_bytes = 1ull << 30;
	s->lifetime_secs = 14 * 86400;
	s->timeout_secs = 60;
	s->restart_max = 3;
	s->net = SLICE_NET_NONE;
	s->env = vs_xcalloc(3, sizeof(char *));
	s->env[0] = vs_xstrdup("A=1");
	s->env[1] = vs_xstrdup("B=two words");
	s->argv = vs_xcalloc(3, sizeof(char *));
	s->argv[0] = vs_xstrdup("sleep");
	s->argv[1] = vs_xstrdup("600");
	s->id_base = IDRANGE_FIRST + 3 * IDRANGE_SIZE;
	s->created = 1700000000;
	s->expires = 1700000000 + 14 * 86400;
}

static void test_spec_round_trip(void **state)
{
	struct slice_spec a, b;
	struct vs_error err;
	fill(&a);
	char *text = spec_to_json(&a);
	assert_non_null(text);
	assert_int_equal(spec_from_json(text, "web1", &b, &err), 0);
	assert_string_equal(b.name, "web1");
	assert_string_equal(b.workdir, "/srv");
	assert_int_equal(b.cpu_millis, 500);
	assert_int_equal(b.memory_bytes, 256u << 20);
	assert_int_equal(b.pids_max, 128);
	assert_int_equal(b.disk_bytes, 1ull << 30);
	assert_int_equal(b.restart_max, 3);
	assert_int_equal(b.id_base, a.id_base);
	assert_string_equal(b.env[1], "B=two words");
	assert_null(b.env[2]);
	assert_string_equal(b.argv[0], "sleep");
	assert_null(b.argv[2]);
	assert_int_equal(b.expires, a.expires);
	slice_spec_free(&b);
	/* The directory name must match: a spec copied under another name is refused. */
	assert_int_not_equal(spec_from_json(text, "other", &b, &err), 0);
	assert_non_null(strstr(err.msg, ".name"));
	free(text);
	slice_spec_free(&a);
}

/* Replace the first occurrence of `from` in the serialized spec with `to`. */
static int load_tampered(const char *from, const char *to, struct vs_error *err)
{
	struct slice_spec a, b;
	fill(&a);
	char *text = spec_to_json(&a);
	slice_spec_free(&a);
	char *p = strstr(text, from);
	assert_non_null(p);
	char *t = vs_xasprintf("%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
	int r = spec_from_json(t, "web1", &b, err);
	if (r == 0)
		slice_spec_free(&b);
	free(text);
	free(t);
	return r;
}

static void test_spec_tampered(void **state)
{
	struct vs_error err;
	struct {
		const char *from, *to, *field;
	} cases[] = {
	    {"\"cpu_millis\": 500", "\"cpu_millis\": \"500\"", ".cpu_millis"},
	    {"\"pids_max\": 128", "\"pids_max\": -1", ".pids_max"},
	    {"\"image\": \"busybox\"", "\"image\": \"../../etc\"", ".image"},
	    {"\"name\": \"web1\"", "\"name\": \"../x\"", ".name"},
	    {"\"id_base\": ", "\"id_base\": 0, \"x\": ", ".id_base"},
	    {"\"net\": \"none\"", "\"net\": \"everything\"", ".net"},
	    {"\"argv\": [", "\"argv\": [1, ", ".argv[0]"},
	    {"\"restart_max\": 3", "\"restart_max\": 1e9", ".restart_max"},
	    {"\"disk_bytes\": 1073741824", "\"disk_bytes\": \"1G\"", ".disk_bytes"},
	    {"\"disk_bytes\": 1073741824", "\"disk_bytes\": 4096", ".disk_bytes"},
	    {"\"disk_bytes\": 1073741824", "\"disk_bytes\": 9223372036854775807", ".disk_bytes"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_not_equal(load_tampered(cases[i].from, cases[i].to, &err), 0);
		if (!strstr(err.msg, cases[i].field))
			fail_msg("case %zu: \"%s\" does not name %s", i, err.msg, cases[i].field);
	}
	struct slice_spec b;
	/* Made before --disk: no disk_bytes means no disk limit. */
	assert_int_equal(load_tampered("\"disk_bytes\": 1073741824,", "", &err), 0);
	assert_int_not_equal(spec_from_json("garbage", "web1", &b, &err), 0);
	assert_int_not_equal(spec_from_json("[]", "web1", &b, &err), 0);
	assert_int_not_equal(spec_from_json("{}", "web1", &b, &err), 0);
	/* Duplicate keys would let one parser see another value than the next. */
	assert_int_not_equal(
	    spec_from_json("{\"name\":\"web1\",\"name\":\"web1\"}", "web1", &b, &err), 0);
}

static void test_state(void **state)
{
	struct slice_state a = {.status = SLICE_RUNNING,
				.pid = 4242,
				.pid_starttime = 99,
				.exit_code = -1,
				.started = 5,
				.idmapped = true};
	struct slice_state b;
	struct vs_error err;
	char *text = state_to_json(&a);
	assert_int_equal(state_from_json(text, &b, &err), 0);
	assert_int_equal(b.status, SLICE_RUNNING);
	assert_int_equal(b.pid, 4242);
	assert_int_equal(b.pid_starttime, 99);
	assert_true(b.idmapped);
	free(text);
	const char *bad[] = {
	    "nope",
	    "{\"status\":\"running\",\"pid\":\"1\"}",
	    "{\"version\":1,\"status\":\"running\",\"pid\":1,\"pid_starttime\":5,\"exit_code\":-1,"
	    "\"exit_reason\":\"\",\"restarts\":0,\"started\":0,\"finished\":0,\"idmapped\":true}",
	    "{\"version\":1,\"status\":\"zombie\",\"pid\":10,\"pid_starttime\":5,\"exit_code\":-1,"
	    "\"exit_reason\":\"\",\"restarts\":0,\"started\":0,\"finished\":0,\"idmapped\":true}",
	    "{\"version\":1,\"status\":\"exited\",\"pid\":10,\"pid_starttime\":5,\"exit_code\":999,"
	    "\"exit_reason\":\"\",\"restarts\":0,\"started\":0,\"finished\":0,\"idmapped\":true}",
	    "{\"version\":1,\"status\":\"running\",\"pid\":99999999,\"pid_starttime\":5,\"exit_"
	    "code\":-1,"
	    "\"exit_reason\":\"\",\"restarts\":0,\"started\":0,\"finished\":0,\"idmapped\":true}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (state_from_json(bad[i], &b, &err) == 0)
			fail_msg("tampered state %zu accepted", i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_round_trip),
	    cmocka_unit_test(test_spec_tampered),
	    cmocka_unit_test(test_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

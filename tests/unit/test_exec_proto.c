/* The remote exec stream's frames (lib/net/exec_proto.c): what a hostile
 * peer can send is bounded, what a slow one leaves unread stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vslice/exec_proto.h"
#include "vslice/util.h"

static struct exec_in *in_with(const void *bytes, size_t n)
{
	struct exec_in *in = vs_xcalloc(1, sizeof(*in));
	memcpy(in->b, bytes, n);
	in->len = n;
	return in;
}

static void test_frames_in(void **state)
{
	(void)state;
	struct vs_error err;
	struct exec_frame f;
	/* Two frames, the second cut short: one at a time, then "more". */
	const unsigned char two[] = {'i', 0, 0, 0, 3, 'a', 'b', 'c', 'e', 0, 0, 0, 0, 'o', 0, 0};
	struct exec_in *in = in_with(two, sizeof(two));
	assert_int_equal(exec_in_frame(in, &f, &err), 1);
	assert_int_equal(f.type, EXEC_STDIN);
	assert_int_equal(f.len, 3);
	assert_memory_equal(f.data, "abc", 3);
	exec_in_consume(in, &f);
	assert_int_equal(exec_in_frame(in, &f, &err), 1);
	assert_int_equal(f.type, EXEC_EOF);
	assert_int_equal(f.len, 0);
	exec_in_consume(in, &f);
	assert_int_equal(exec_in_frame(in, &f, &err), 0); /* a header's 3 bytes of 5 */
	free(in);

	/* A length beyond the cap is an error at once, not a wait for 4 GiB. */
	const unsigned char huge[] = {'i', 0xff, 0xff, 0xff, 0xff};
	in = in_with(huge, sizeof(huge));
	assert_true(exec_in_frame(in, &f, &err) < 0);
	assert_non_null(strstr(err.msg, "at most"));
	free(in);
	const unsigned char over[] = {'o', 0, 1, 0, 1}; /* EXEC_FRAME_MAX + 1 */
	in = in_with(over, sizeof(over));
	assert_true(exec_in_frame(in, &f, &err) < 0);
	free(in);
	/* The largest frame fits the buffer whole. */
	in = vs_xcalloc(1, sizeof(*in));
	in->b[0] = 'i';
	exec_put_u32(in->b + 1, EXEC_FRAME_MAX);
	in->len = EXEC_FRAME_HDR + EXEC_FRAME_MAX;
	assert_int_equal(exec_in_room(in), 0);
	assert_int_equal(exec_in_frame(in, &f, &err), 1);
	assert_int_equal(f.len, EXEC_FRAME_MAX);
	free(in);
	/* An unknown type. */
	const unsigned char odd[] = {'Z', 0, 0, 0, 0};
	in = in_with(odd, sizeof(odd));
	assert_true(exec_in_frame(in, &f, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown frame type"));
	free(in);
}

static void test_frames_out(void **state)
{
	(void)state;
	struct exec_out *o = vs_xcalloc(1, sizeof(*o));
	assert_true(exec_out_empty(o));
	assert_true(exec_out_put(o, EXEC_STDOUT, "hi", 2));
	assert_int_equal(o->len, EXEC_FRAME_HDR + 2);
	assert_int_equal(o->b[0], 'o');
	assert_int_equal(exec_get_u32(o->b + 1), 2);
	/* Filling it: puts fail once full, nothing grows. */
	static unsigned char chunk[EXEC_CHUNK];
	int n = 0;
	while (exec_out_put(o, EXEC_STDOUT, chunk, sizeof(chunk)))
		n++;
	assert_true(n >= 3 && n <= 4);
	assert_true(exec_out_room(o) < EXEC_CHUNK);
	assert_null(exec_out_begin(o, EXEC_CHUNK));
	assert_false(exec_out_put(o, EXEC_STDOUT, chunk, EXEC_FRAME_MAX + 1));
	/* Sent bytes make room again (compacted on the next frame). */
	exec_out_sent(o, EXEC_FRAME_HDR + 2 + EXEC_FRAME_HDR + EXEC_CHUNK);
	unsigned char *p = exec_out_begin(o, EXEC_CHUNK);
	assert_non_null(p);
	memcpy(p, "xyz", 3);
	exec_out_commit(o, EXEC_STDERR, 3);
	assert_int_equal(o->off, 0);
	assert_int_equal(o->b[o->len - 3 - EXEC_FRAME_HDR], 'r');
	exec_out_sent(o, o->len);
	assert_true(exec_out_empty(o));
	free(o);
}

static int start(const char *json, bool shell, struct exec_start *s, struct vs_error *err)
{
	return exec_start_parse((const unsigned char *)json, strlen(json), shell, s, err);
}

static void test_start(void **state)
{
	(void)state;
	struct vs_error err;
	struct exec_start s;
	assert_int_equal(start("{\"argv\":[\"ls\",\"-l\"],\"env\":[\"A=1\"],\"workdir\":\"/tmp\","
			       "\"tty\":true,\"rows\":24,\"cols\":80}",
			       false, &s, &err),
			 0);
	assert_string_equal(s.argv[0], "ls");
	assert_string_equal(s.argv[1], "-l");
	assert_null(s.argv[2]);
	assert_string_equal(s.env[0], "A=1");
	assert_string_equal(s.workdir, "/tmp");
	assert_true(s.tty);
	assert_int_equal(s.rows, 24);
	assert_int_equal(s.cols, 80);
	exec_start_free(&s);
	assert_int_equal(start("{\"tty\":false}", true, &s, &err), 0); /* a shell: no argv */
	assert_null(s.argv);
	exec_start_free(&s);
	/* Each refusal names its field. */
	const struct {
		const char *json, *field;
		bool shell;
	} bad[] = {
	    {"[]", "not a JSON object", false},
	    {"{", "not a JSON object", false},
	    {"{}", "argv", false},
	    {"{\"argv\":[]}", "argv", false},
	    {"{\"argv\":[\"sh\"]}", "argv", true},
	    {"{\"argv\":[1]}", "argv[0]", false},
	    {"{\"argv\":[\"a\\u0000b\"]}", "NUL", false},
	    {"{\"argv\":[\"x\"],\"env\":[\"NOEQ\"]}", "env[0]", false},
	    {"{\"argv\":[\"x\"],\"workdir\":\"rel\"}", "workdir", false},
	    {"{\"argv\":[\"x\"],\"tty\":1}", "tty", false},
	    {"{\"argv\":[\"x\"],\"rows\":70000}", "rows", false},
	    {"{\"argv\":[\"x\"],\"cols\":-1}", "cols", false},
	    {"{\"argv\":[\"x\"],\"argv\":[\"y\"]}", "not a JSON object", false},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = start(bad[i].json, bad[i].shell, &s, &err);
		if (r >= 0 || !strstr(err.msg, bad[i].field))
			fail_msg("%s: got %d \"%s\"", bad[i].json, r, r < 0 ? err.msg : "");
		assert_null(s.argv);
	}
	/* The client's side: what it builds parses back; not UTF-8 is refused. */
	char *argv[] = {"echo", "hé", NULL}, *env[] = {"K=V", NULL};
	json_t *j = exec_start_json(argv, env, "/w", true, 10, 20);
	char *text = json_dumps(j, 0);
	assert_int_equal(start(text, false, &s, &err), 0);
	assert_string_equal(s.argv[1], "hé");
	assert_int_equal(s.cols, 20);
	exec_start_free(&s);
	free(text);
	json_decref(j);
	char *bin[] = {"echo", "\xff\xfe", NULL};
	assert_null(exec_start_json(bin, NULL, NULL, false, 0, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frames_in),
	    cmocka_unit_test(test_frames_out),
	    cmocka_unit_test(test_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

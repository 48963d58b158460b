/* The node manager's pure parts: assignments, decisions, records, states. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/node/nodemgr_int.h"
#include "vslice/nodemgr.h"

static json_t *answer(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	assert_non_null(j);
	return j;
}

static void test_assignments(void **state)
{
	struct vs_error err;
	struct nodemgr_assignment *a;
	size_t n;
	long long index;
	json_t *j = answer("{\"index\": 7, \"slivers\": ["
			   "{\"slice\": \"hello\", \"manifest\": {\"slice\": \"hello\", \"b\": 1},"
			   " \"expires\": 100},"
			   "{\"slice\": \"Bad Name\", \"manifest\": {}},"
			   "{\"slice\": \"hello\", \"manifest\": {}},"
			   "{\"slice\": \"nomani\"}]}");
	assert_int_equal(nodemgr_assignments_parse(j, &a, &n, &index, &err), 0);
	assert_int_equal(index, 7);
	assert_int_equal(n, 2);
	assert_string_equal(a[0].slice, "hello");
	assert_int_equal(a[0].expires, 100);
	assert_int_equal(strlen(a[0].sha256), 64);
	assert_string_equal(a[1].slice, "nomani");
	assert_null(a[1].manifest);
	assert_string_equal(a[1].sha256, "");

	/* The registry's digest, when given, is the sliver's identity and the
	 * manifest is fetched later. */
	json_t *d =
	    answer("{\"index\": 8, \"slivers\": [{\"slice\": \"big\", \"manifest_sha256\": "
		   "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\", "
		   "\"expires\": 5}, {\"slice\": \"badsum\", \"manifest_sha256\": \"XYZ\"}]}");
	struct nodemgr_assignment *da;
	size_t dn;
	assert_int_equal(nodemgr_assignments_parse(d, &da, &dn, &index, &err), 0);
	assert_int_equal(dn, 2);
	assert_null(da[0].manifest);
	assert_string_equal(da[0].sha256,
			    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_string_equal(da[1].sha256, "");
	nodemgr_assignments_free(da, dn);
	json_decref(d);

	/* The overlay (issue 13): an entry's cluster address when it is an
	 * IPv4 address (else none), and its slice's addresses. */
	json_t *o = answer("{\"slivers\": [{\"slice\": \"net\", \"address\": \"10.213.0.2\","
			   " \"addresses\": {\"n1\": \"10.213.0.2\"}},"
			   " {\"slice\": \"bad\", \"address\": \"10.213.0.2; rm -rf /\"}]}");
	struct nodemgr_assignment *oa;
	size_t on;
	assert_int_equal(nodemgr_assignments_parse(o, &oa, &on, NULL, &err), 0);
	assert_int_equal(on, 2);
	assert_string_equal(oa[0].address, "10.213.0.2");
	assert_string_equal(json_string_value(json_object_get(oa[0].addresses, "n1")),
			    "10.213.0.2");
	assert_string_equal(oa[1].address, "");
	assert_null(oa[1].addresses);
	nodemgr_assignments_free(oa, on);
	json_decref(o);

	/* The hash does not depend on key order. */
	json_t *k = answer("{\"slivers\": [{\"slice\": \"hello\","
			   " \"manifest\": {\"b\": 1, \"slice\": \"hello\"}}]}");
	struct nodemgr_assignment *b;
	size_t nb;
	assert_int_equal(nodemgr_assignments_parse(k, &b, &nb, &index, &err), 0);
	assert_int_equal(index, -1);
	assert_string_equal(a[0].sha256, b[0].sha256);
	nodemgr_assignments_free(b, nb);
	json_decref(k);
	nodemgr_assignments_free(a, n);
	json_decref(j);

	/* An answer that is not one must never read as "nothing assigned". */
	const char *bad[] = {"[]", "{}", "{\"slivers\": {}}", "{\"error\": \"x\"}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = answer(bad[i]);
		assert_true(nodemgr_assignments_parse(j, &a, &n, NULL, &err) < 0);
		assert_null(a);
		json_decref(j);
	}
	assert_true(nodemgr_assignments_parse(NULL, &a, &n, NULL, &err) < 0);
}

static void test_decide(void **state)
{
	struct nodemgr_assignment a = {.slice = "hello", .sha256 = "aaa", .expires = 10};
	struct nodemgr_record r = {.slice = "hello", .sha256 = "aaa", .expires = 10};

	/* Assigned, nothing here. */
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_NONE), NODEMGR_CREATE);
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_FOREIGN), NODEMGR_CONFLICT);
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_OURS), NODEMGR_ADOPT);

	r.phase = NODEMGR_CREATED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_KEEP);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_VANISHED);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_VANISHED);
	/* A renewal (expires only) keeps a running sliver and moves its end;
	 * an assignment without expires moves nothing. */
	a.expires = 20;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RENEW);
	a.expires = 0;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_KEEP);
	a.expires = 20;
	snprintf(a.sha256, sizeof(a.sha256), "bbb");
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);
	snprintf(a.sha256, sizeof(a.sha256), "aaa");
	a.expires = 10;

	/* A crash mid-create: finish a complete slice, redo a half-made one. */
	r.phase = NODEMGR_CREATING;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RESUME);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_RECREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_CREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_CONFLICT);
	snprintf(a.sha256, sizeof(a.sha256), "bbb"); /* changed while we were down */
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);
	snprintf(a.sha256, sizeof(a.sha256), "aaa");
	/* ... and the slice's assignment gone meanwhile: roll it back. */
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);

	/* A crash mid-destroy: finish it (and make the sliver again if assigned). */
	r.phase = NODEMGR_DESTROYING;
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_FORGET);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_RECREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_CREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_CONFLICT);

	/* A slice without experiment.json is never ours without an intent. */
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_PARTIAL), NODEMGR_CONFLICT);
	assert_int_equal(nodemgr_decide(NULL, NULL, NODEMGR_LOCAL_PARTIAL), NODEMGR_NOTHING);
	r.phase = NODEMGR_CREATED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_VANISHED);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_FORGET);

	/* Failed: not retried until the assignment changes. */
	r.phase = NODEMGR_FAILED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_KEEP);
	a.expires = 11;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_CREATE);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_CONFLICT);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);

	/* Not assigned: destroy only what is ours. */
	assert_int_equal(nodemgr_decide(NULL, NULL, NODEMGR_LOCAL_NONE), NODEMGR_NOTHING);
	assert_int_equal(nodemgr_decide(NULL, NULL, NODEMGR_LOCAL_FOREIGN), NODEMGR_NOTHING);
	assert_int_equal(nodemgr_decide(NULL, NULL, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	r.phase = NODEMGR_CREATED;
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_FOREIGN), NODEMGR_FORGET);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);
	r.phase = NODEMGR_FAILED;
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);
	assert_string_equal(nodemgr_action_name(NODEMGR_DESTROY), "destroy");
	assert_string_equal(nodemgr_action_name(NODEMGR_RENEW), "renew");
}

/* Cold migration: what the assignment says the registry is at, against
 * the record's phase (a restart mid-step) and what is on disk. */
static void test_decide_migration(void **state)
{
	struct nodemgr_assignment a = {.slice = "m1", .sha256 = "aaa", .expires = 10};
	struct nodemgr_record r = {.slice = "m1", .sha256 = "aaa", .expires = 10};
	snprintf(a.mig.id, sizeof(a.mig.id), "mg_0011223344556677");

	/* Source: a running sliver of ours is asked to move. */
	a.mig.role = NODEMGR_MIG_OUT;
	r.phase = NODEMGR_CREATED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_OUT);
	/* ... not one that is not ours or not the one assigned */
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_NONE), NODEMGR_VANISHED);
	snprintf(a.sha256, sizeof(a.sha256), "bbb");
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);
	snprintf(a.sha256, sizeof(a.sha256), "aaa");
	/* A restart while migrating out: ask the registry (still running,
	 * aborted: a plain entry), or it is committed (no entry): destroy. */
	r.phase = NODEMGR_MIGRATING_OUT;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_RESOLVE);
	a.mig.role = NODEMGR_MIG_NONE;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_RESOLVE);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);

	/* Target: nothing here, or our half-made copy: make it (again). */
	a.mig.role = NODEMGR_MIG_IN;
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_NONE), NODEMGR_MIGRATE_IN);
	assert_int_equal(nodemgr_decide(&a, NULL, NODEMGR_LOCAL_FOREIGN), NODEMGR_CONFLICT);
	r.phase = NODEMGR_MIGRATING_IN;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_MIGRATE_IN);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_IN);
	/* ... a sliver of the slice that runs here is never replaced */
	r.phase = NODEMGR_CREATED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_KEEP);
	/* A restart while receiving or restored: ask the registry. */
	r.phase = NODEMGR_RECEIVING;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_RESOLVE);
	r.phase = NODEMGR_RESTORED;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_RESOLVE);
	/* Committed (a plain entry): restored rolls forward through the
	 * registry; aborted (no entry): the copy goes. */
	a.mig.role = NODEMGR_MIG_NONE;
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_MIGRATE_RESOLVE);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	r.phase = NODEMGR_RECEIVING;
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_OURS), NODEMGR_DESTROY);
	r.phase = NODEMGR_MIGRATING_IN;
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_PARTIAL), NODEMGR_DESTROY);
	assert_int_equal(nodemgr_decide(NULL, &r, NODEMGR_LOCAL_NONE), NODEMGR_FORGET);
	assert_int_equal(nodemgr_decide(&a, &r, NODEMGR_LOCAL_OURS), NODEMGR_RECREATE);
	assert_string_equal(nodemgr_action_name(NODEMGR_MIGRATE_RESOLVE), "migrate-resolve");
}

static void test_assignments_migration(void **state)
{
	const char *tok = "vst_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"slivers\": ["
		 "{\"slice\": \"out\", \"migrate_out\": {\"id\": \"mg_00aa\", \"to\": \"n2\","
		 " \"url\": \"http://10.0.0.2:7481\", \"token\": \"%s\", \"mode\": \"cold\"}},"
		 "{\"slice\": \"in\", \"migrate_in\": {\"id\": \"mg_00bb\", \"from\": \"n1\","
		 " \"token_sha256\": \"%s\", \"mode\": \"cold\"}},"
		 "{\"slice\": \"badurl\", \"migrate_out\": {\"id\": \"mg_00cc\", \"to\": \"n2\","
		 " \"url\": \"file:///etc\", \"token\": \"%s\", \"mode\": \"cold\"}},"
		 "{\"slice\": \"badid\", \"migrate_out\": {\"id\": \"../x\", \"to\": \"n2\","
		 " \"url\": \"http://h:1\", \"token\": \"%s\", \"mode\": \"cold\"}}]}",
		 tok, sha, tok, tok);
	json_t *ans = json_loads(text, 0, NULL);
	assert_non_null(ans);
	struct nodemgr_assignment *v;
	size_t n;
	struct vs_error err;
	assert_int_equal(nodemgr_assignments_parse(ans, &v, &n, NULL, &err), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].mig.role, NODEMGR_MIG_OUT);
	assert_string_equal(v[0].mig.id, "mg_00aa");
	assert_string_equal(v[0].mig.peer, "n2");
	assert_string_equal(v[0].mig.url, "http://10.0.0.2:7481");
	assert_string_equal(v[0].mig.token, tok);
	assert_int_equal(v[1].mig.role, NODEMGR_MIG_IN);
	assert_string_equal(v[1].mig.token_sha256, sha);
	assert_string_equal(v[1].mig.peer, "n1");
	/* A url that is not http(s), an id that could leave a path: ignored. */
	assert_int_equal(v[2].mig.role, NODEMGR_MIG_NONE);
	assert_int_equal(v[3].mig.role, NODEMGR_MIG_NONE);
	nodemgr_assignments_free(v, n);
	json_decref(ans);
}

static void test_advertise(void **state)
{
	char *url;
	struct vs_error err;
	assert_int_equal(nodemgr_advertise_url("10.0.0.2:7481", 0, NULL, false, &url, &err), 0);
	assert_string_equal(url, "http://10.0.0.2:7481");
	free(url);
	assert_int_equal(nodemgr_advertise_url("10.0.0.2:0", 4321, NULL, true, &url, &err), 0);
	assert_string_equal(url, "https://10.0.0.2:4321");
	free(url);
	assert_int_equal(nodemgr_advertise_url("[::1]:7481", 0, NULL, false, &url, &err), 0);
	assert_string_equal(url, "http://[::1]:7481");
	free(url);
	/* A wildcard cannot be dialled: no url unless --advertise names one. */
	assert_int_equal(nodemgr_advertise_url("0.0.0.0:7481", 0, NULL, false, &url, &err), 0);
	assert_null(url);
	assert_int_equal(
	    nodemgr_advertise_url("0.0.0.0:7481", 0, "http://n2.example:7481", false, &url, &err),
	    0);
	assert_string_equal(url, "http://n2.example:7481");
	free(url);
	assert_int_equal(nodemgr_advertise_url(NULL, 0, NULL, false, &url, &err), 0);
	assert_null(url);
	const char *bad[] = {"ftp://x", "http://", "http://a b", "https://x:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(nodemgr_advertise_url("0.0.0.0:1", 0, bad[i], false, &url, &err),
				 -EINVAL);
		assert_non_null(strstr(err.msg, "--advertise"));
	}
}

static void test_record(void **state)
{
	struct nodemgr_record r = {.slice = "hello",
				   .phase = NODEMGR_FAILED,
				   .sha256 = "abc",
				   .expires = 5,
				   .message = "image x: no such image",
				   .created = 3,
				   .log_offset = 1234,
				   .log_capped = true,
				   .results_done = true};
	json_t *j = nodemgr_record_to_json(&r);
	assert_non_null(j);
	struct nodemgr_record back;
	struct vs_error err;
	assert_int_equal(nodemgr_record_from_json(j, &back, &err), 0);
	assert_string_equal(back.slice, "hello");
	assert_int_equal(back.phase, NODEMGR_FAILED);
	assert_string_equal(back.sha256, "abc");
	assert_int_equal(back.expires, 5);
	assert_string_equal(back.message, "image x: no such image");
	assert_int_equal(back.log_offset, 1234);
	assert_true(back.log_capped && back.results_done);
	nodemgr_record_free(&back);
	json_object_set_new(j, "phase", json_string("destroying"));
	assert_int_equal(nodemgr_record_from_json(j, &back, &err), 0);
	assert_int_equal(back.phase, NODEMGR_DESTROYING);
	nodemgr_record_free(&back);
	/* Migration phases and the migration's id; a record written before
	 * migration (no "migration") still loads. */
	json_object_set_new(j, "phase", json_string("migrating-out"));
	json_object_set_new(j, "migration", json_string("mg_00aa"));
	assert_int_equal(nodemgr_record_from_json(j, &back, &err), 0);
	assert_int_equal(back.phase, NODEMGR_MIGRATING_OUT);
	assert_string_equal(back.migration, "mg_00aa");
	nodemgr_record_free(&back);
	json_object_set_new(j, "phase", json_string("restored"));
	json_object_del(j, "migration");
	assert_int_equal(nodemgr_record_from_json(j, &back, &err), 0);
	assert_int_equal(back.phase, NODEMGR_RESTORED);
	assert_string_equal(back.migration, "");
	nodemgr_record_free(&back);
	json_object_set_new(j, "migration", json_string("../../x"));
	assert_true(nodemgr_record_from_json(j, &back, &err) < 0);
	json_object_del(j, "migration");
	json_object_set_new(j, "phase", json_string("running"));
	assert_true(nodemgr_record_from_json(j, &back, &err) < 0);
	json_object_set_new(j, "phase", json_string("created"));
	json_object_set_new(j, "extra", json_true());
	assert_true(nodemgr_record_from_json(j, &back, &err) < 0);
	json_decref(j);
}

static void test_status(void **state)
{
	struct nodemgr_record r = {.slice = "hello", .phase = NODEMGR_CREATED};
	struct slice_state st = {.status = SLICE_RUNNING, .exit_code = -1, .started = 100};
	json_t *j = nodemgr_sliver_status(&r, &st);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), -1);
	assert_int_equal(json_integer_value(json_object_get(j, "started")), 100);
	json_decref(j);

	st.status = SLICE_EXITED;
	st.exit_code = 3;
	st.finished = 200;
	st.restarts = 2;
	snprintf(st.exit_reason, sizeof(st.exit_reason), "timeout");
	j = nodemgr_sliver_status(&r, &st);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "exited");
	assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 3);
	assert_string_equal(json_string_value(json_object_get(j, "reason")), "timeout");
	assert_int_equal(json_integer_value(json_object_get(j, "finished")), 200);
	assert_int_equal(json_integer_value(json_object_get(j, "restarts")), 2);
	json_decref(j);

	st.exit_reason[0] = 0;
	j = nodemgr_sliver_status(&r, &st);
	assert_string_equal(json_string_value(json_object_get(j, "reason")), "exited");
	json_decref(j);

	st.status = SLICE_FROZEN;
	j = nodemgr_sliver_status(&r, &st);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	json_decref(j);

	r.phase = NODEMGR_CREATING;
	j = nodemgr_sliver_status(&r, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "creating");
	json_decref(j);

	r.phase = NODEMGR_FAILED;
	r.message = "no such image";
	j = nodemgr_sliver_status(&r, &st);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
	assert_string_equal(json_string_value(json_object_get(j, "message")), "no such image");
	assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), -1);
	json_decref(j);
}

static void test_defaults(void **state)
{
	struct manifest m = {0};
	assert_int_equal(nodemgr_apply_defaults(&m, 64u << 20, 100, 0),
			 NODEMGR_DEFAULTED_MEMORY | NODEMGR_DEFAULTED_PIDS);
	assert_int_equal(m.disk_bytes, 0);
	assert_int_equal(m.memory_bytes, 64u << 20);
	assert_int_equal(m.pids_max, 100);
	/* The manifest's own limits win, whatever the node's default. */
	m.memory_bytes = 8u << 20;
	m.pids_max = 0;
	assert_int_equal(nodemgr_apply_defaults(&m, 1u << 30, 50, 0), NODEMGR_DEFAULTED_PIDS);
	assert_int_equal(m.memory_bytes, 8u << 20);
	assert_int_equal(m.pids_max, 50);
	m.pids_max = 7;
	assert_int_equal(nodemgr_apply_defaults(&m, 1u << 30, 50, 0), 0);
	assert_int_equal(m.pids_max, 7);
	/* 0: no default. */
	struct manifest none = {0};
	assert_int_equal(nodemgr_apply_defaults(&none, 0, 0, 0), 0);
	assert_int_equal(none.memory_bytes, 0);
	assert_int_equal(none.pids_max, 0);
	assert_int_equal(none.disk_bytes, 0);
	/* The disk default, on its own: a manifest's resources.disk wins. */
	struct manifest d = {.memory_bytes = 8u << 20, .pids_max = 7};
	assert_int_equal(nodemgr_apply_defaults(&d, 1u << 30, 50, 10ull << 30),
			 NODEMGR_DEFAULTED_DISK);
	assert_int_equal(d.disk_bytes, 10ull << 30);
	d.disk_bytes = 64u << 20;
	assert_int_equal(nodemgr_apply_defaults(&d, 1u << 30, 50, 10ull << 30), 0);
	assert_int_equal(d.disk_bytes, 64u << 20);
}

static void test_fault(void **state)
{
	const char *op;
	unsigned step;
	struct vs_error err;
	assert_int_equal(nodemgr_fault_parse(NULL, &op, &step, &err), 0);
	assert_null(op);
	assert_int_equal(nodemgr_fault_parse("", &op, &step, &err), 0);
	assert_null(op);
	assert_int_equal(nodemgr_fault_parse("registry.commit:2", &op, &step, &err), 0);
	assert_null(op);
	assert_int_equal(nodemgr_fault_parse("nodemgr.create:2", &op, &step, &err), 0);
	assert_string_equal(op, "nodemgr.create");
	assert_int_equal(step, 2);
	assert_int_equal(nodemgr_fault_parse("nodemgr.destroy:13", &op, &step, &err), 0);
	assert_string_equal(op, "nodemgr.destroy");
	assert_int_equal(step, 13);
	assert_int_equal(nodemgr_fault_parse("migrate.out:4", &op, &step, &err), 0);
	assert_string_equal(op, "migrate.out");
	assert_int_equal(step, 4);
	assert_int_equal(nodemgr_fault_parse("migrate.flip:0", &op, &step, &err), 0);
	assert_string_equal(op, "migrate.flip");
	assert_int_equal(step, 0);
	assert_int_equal(nodemgr_fault_parse("migrate.flip:5000000", &op, &step, &err), 0);
	assert_int_equal(step, 5000000);
	assert_int_equal(nodemgr_fault_parse("nodemgr.fetch_delay:20000", &op, &step, &err), 0);
	assert_string_equal(op, "nodemgr.fetch_delay");
	assert_int_equal(step, 20000);
	assert_int_equal(nodemgr_fault_parse("nodemgr.fetch_delay:60001", &op, &step, &err),
			 -EINVAL);
	assert_int_equal(nodemgr_fault_parse("migrate.in:0", &op, &step, &err), -EINVAL);
	assert_int_equal(nodemgr_fault_parse("migrate.sideways:1", &op, &step, &err), -EINVAL);
	const char *bad[] = {"nodemgr.create",	  "nodemgr.create:",   "nodemgr.create:0",
			     "nodemgr.create:-1", "nodemgr.create:2x", "nodemgr.creat:2",
			     "nodemgr.createx:2", "nodemgr.:1",	       "nodemgr.destroy: 1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(nodemgr_fault_parse(bad[i], &op, &step, &err), -EINVAL);
		assert_null(op);
		assert_non_null(strstr(err.msg, "VSLICE_FAULT"));
	}
}

/* The cgroup parent: given (trimmed, checked), else recorded, else the old
 * default for a root with slices, else vslice-NODE. */
static void test_cgroup_parent(void **state)
{
	char root[] = "/tmp/vslice-unit-cgp.XXXXXX";
	assert_non_null(mkdtemp(root));
	struct vs_error err;
	char *p = NULL;
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", NULL, &p, &err), 0);
	assert_string_equal(p, "vslice-node7");
	free(p);
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", "", &p, &err), 0);
	assert_string_equal(p, "vslice-node7");
	free(p);
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", "/a/b/", &p, &err), 0);
	assert_string_equal(p, "a/b");
	free(p);
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", "a/../b", &p, &err), -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err.msg, "cgroup parent \"a/../b\""));
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", "a b", &p, &err), -EINVAL);

	/* A root with slices and no record: an older node manager's, "vslice". */
	char d[256];
	snprintf(d, sizeof(d), "%s/slices/s1", root);
	assert_int_equal(vs_mkdir_p(d, 0700, &err), 0);
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", NULL, &p, &err), 0);
	assert_string_equal(p, "vslice");
	free(p);
	assert_null(nodemgr_root_cgroup_parent(root));

	/* A record wins over both; one that is no valid parent is ignored. */
	snprintf(d, sizeof(d), "%s/nodemgr", root);
	assert_int_equal(vs_mkdir_p(d, 0700, &err), 0);
	snprintf(d, sizeof(d), "%s/nodemgr/cgroup-parent", root);
	assert_int_equal(vs_write_file_atomic(d, "vslice-old\n", 11, 0644, &err), 0);
	p = nodemgr_root_cgroup_parent(root);
	assert_string_equal(p, "vslice-old");
	free(p);
	assert_int_equal(nodemgr_cgroup_parent(root, "node7", NULL, &p, &err), 0);
	assert_string_equal(p, "vslice-old");
	free(p);
	assert_int_equal(vs_write_file_atomic(d, "../../etc\n", 10, 0644, &err), 0);
	assert_null(nodemgr_root_cgroup_parent(root));
	assert_int_equal(vs_rm_rf(root, &err), 0);
}

static void test_misc(void **state)
{
	assert_true(nodemgr_node_name_valid("node1"));
	assert_true(nodemgr_node_name_valid("Node-1.eu_x"));
	assert_false(nodemgr_node_name_valid(""));
	assert_false(nodemgr_node_name_valid("-node"));
	assert_false(nodemgr_node_name_valid("a/b"));
	assert_false(nodemgr_node_name_valid("a b"));
	char longname[80];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_false(nodemgr_node_name_valid(longname));
}

/* --- the live stream's relay (nodemgr_migrate.c) -------------------- */

#define RELAY_HOLD (64u << 10)

static unsigned char relay_byte(size_t i)
{
	return (unsigned char)(i * 2654435761u >> 13);
}

struct relay_feed {
	int fd;
	size_t len;	    /* bytes to write */
	bool tiny;	    /* vmsplice a byte at a time: a pipe slot each */
	unsigned char *src; /* relay_byte(i) for every i < len */
};

static void *relay_feeder(void *arg)
{
	struct relay_feed *f = arg;
	size_t off = 0;
	while (off < f->len) {
		size_t n = f->tiny ? 1 : 1 + (off * 7919) % 300000;
		if (n > f->len - off)
			n = f->len - off;
		struct iovec iov = {.iov_base = f->src + off, .iov_len = n};
		ssize_t w = f->tiny ? vmsplice(f->fd, &iov, 1, 0) : write(f->fd, iov.iov_base, n);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(f->fd);
	return NULL;
}

struct relay_sink {
	int fd;
	unsigned char *buf;
	size_t cap, got;
};

static void *relay_drain(void *arg)
{
	struct relay_sink *k = arg;
	ssize_t r;
	while (k->got < k->cap && (r = read(k->fd, k->buf + k->got, k->cap - k->got)) > 0)
		k->got += (size_t)r;
	return NULL;
}

/* A connected TCP pair on the loopback: s[0] reads, s[1] (non-blocking, as
 * libcurl leaves an upgraded connection's socket) is the relay's out. */
static void tcp_pair(int s[2])
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	s[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(s[1], (struct sockaddr *)&a, sizeof(a)), 0);
	s[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(s[0] >= 0);
	close(l);
	assert_int_equal(fcntl(s[1], F_SETFL, O_NONBLOCK), 0);
}

/* The relay's wait on a full socket, as the node manager's: poll for room.
 * *calls counts the checks (fd -1); at cancel_at (0: never) it gives up. */
struct relay_waits {
	unsigned checks, waits, cancel_at;
};

static int relay_sock_wait(void *arg, int fd)
{
	struct relay_waits *w = arg;
	if (fd < 0)
		return w->cancel_at && ++w->checks >= w->cancel_at ? -ECANCELED : 0;
	w->waits++;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	poll(&p, 1, 1000);
	return 0;
}

/* Everything but the last RELAY_HOLD bytes goes through at once, in
 * order; those stay until the flush. tiny: a byte a slot, more slots than
 * the holding pipe has while it holds less than RELAY_HOLD: the relay must
 * pass them on rather than wait forever. sock: out is a TCP socket (an
 * upgraded transfer), spliced into without blocking. */
static void relay_case_to(size_t len, bool tiny, bool sock)
{
	int in[2], out[2];
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	if (sock)
		tcp_pair(out);
	else
		assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	unsigned char *src = malloc(len);
	for (size_t i = 0; i < len; i++)
		src[i] = relay_byte(i);
	struct relay_feed f = {.fd = in[1], .len = len, .tiny = tiny, .src = src};
	struct relay_sink k = {.fd = out[0], .buf = malloc(len + 1), .cap = len + 1};
	pthread_t ft, kt;
	assert_int_equal(pthread_create(&ft, NULL, relay_feeder, &f), 0);
	assert_int_equal(pthread_create(&kt, NULL, relay_drain, &k), 0);
	struct nm_relay r;
	struct relay_waits w = {0};
	assert_int_equal(nm_relay_init(&r, RELAY_HOLD), 0);
	if (sock) {
		r.out_wait = relay_sock_wait;
		r.wait_arg = &w;
	}
	assert_int_equal(nm_relay_run(&r, in[0], out[1], NULL, NULL), 0);
	pthread_join(ft, NULL);
	if (!tiny) {
		/* held back: exactly the tail */
		size_t held = len > RELAY_HOLD ? RELAY_HOLD : len;
		assert_int_equal(r.sent, len - held);
	}
	assert_true(r.sent <= len);
	assert_int_equal(nm_relay_flush(&r, out[1]), 0);
	assert_int_equal(r.sent, len);
	nm_relay_close(&r);
	close(out[1]);
	pthread_join(kt, NULL);
	assert_int_equal(k.got, len);
	assert_memory_equal(k.buf, src, len);
	close(in[0]);
	close(out[0]);
	free(k.buf);
	free(src);
}

static void relay_case(size_t len, bool tiny)
{
	relay_case_to(len, tiny, false);
}

static void test_relay_holds_the_tail(void **state)
{
	(void)state;
	relay_case(5u << 20, false);
	relay_case(1000, false); /* shorter than what is held: all of it waits */
}

/* Into a socket: 64 MiB, more than the socket buffers hold, so the relay
 * meets a full socket (EAGAIN) and waits for room rather than failing or
 * losing bytes; then the tail at the flush, as into a pipe. */
static void test_relay_to_socket(void **state)
{
	(void)state;
	relay_case_to(64u << 20, false, true);
	relay_case_to(1000, false, true);
	relay_case_to(3000, true, true);
}

/* A migration given up while the relay runs (out_wait says so): the relay
 * stops with its error, sending no more. */
static void test_relay_given_up(void **state)
{
	(void)state;
	nm_block_sigpipe(); /* the feeder's write after the relay gave up */
	int in[2], out[2];
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	tcp_pair(out);
	unsigned char *src = malloc(8u << 20);
	memset(src, 7, 8u << 20);
	struct relay_feed f = {.fd = in[1], .len = 8u << 20, .src = src};
	pthread_t ft;
	assert_int_equal(pthread_create(&ft, NULL, relay_feeder, &f), 0);
	struct nm_relay r;
	struct relay_waits w = {.cancel_at = 3};
	assert_int_equal(nm_relay_init(&r, RELAY_HOLD), 0);
	r.out_wait = relay_sock_wait;
	r.wait_arg = &w;
	assert_int_equal(nm_relay_run(&r, in[0], out[1], NULL, NULL), -ECANCELED);
	assert_int_equal(w.checks, 3);
	assert_true(r.sent < (8u << 20));
	nm_relay_close(&r);
	close(in[0]); /* the feeder gets EPIPE */
	pthread_join(ft, NULL);
	close(out[0]);
	close(out[1]);
	free(src);
}

static void test_relay_tiny_slots(void **state)
{
	(void)state;
	relay_case(3000, true);
}

/* A reader that went away: the relay fails with EPIPE (the dump then gets
 * EPIPE in turn: the slice runs on). */
static void test_relay_reader_gone(void **state)
{
	(void)state;
	nm_block_sigpipe();
	int in[2], out[2];
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	close(out[0]);
	assert_true(fcntl(in[1], F_SETPIPE_SZ, 1 << 20) >= (256 << 10));
	static unsigned char buf[256 << 10];
	assert_int_equal(write(in[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(in[1]);
	struct nm_relay r;
	assert_int_equal(nm_relay_init(&r, RELAY_HOLD), 0);
	assert_int_equal(nm_relay_run(&r, in[0], out[1], NULL, NULL), -EPIPE);
	nm_relay_close(&r);
	close(in[0]);
	close(out[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_assignments),
	    cmocka_unit_test(test_decide),
	    cmocka_unit_test(test_record),
	    cmocka_unit_test(test_status),
	    cmocka_unit_test(test_misc),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_fault),
	    cmocka_unit_test(test_cgroup_parent),
	    cmocka_unit_test(test_decide_migration),
	    cmocka_unit_test(test_assignments_migration),
	    cmocka_unit_test(test_advertise),
	    cmocka_unit_test(test_relay_holds_the_tail),
	    cmocka_unit_test(test_relay_tiny_slots),
	    cmocka_unit_test(test_relay_to_socket),
	    cmocka_unit_test(test_relay_given_up),
	    cmocka_unit_test(test_relay_reader_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

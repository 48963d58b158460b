/*
 * test_tickets.c - the registry's ticket table (lib/registry/tickets.c),
 * driven with a clock of its own: a ticket's form, single use, the node it
 * is bound to, expiry and the sweep, the caps per user and in all, and the
 * reasons the registry logs (which the node never sees).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../lib/registry/tickets.h"
#include "vslice/util.h"

static struct ticket_grant grant(const char *user, const char *node, const char *verb)
{
	struct ticket_grant g = {0};
	snprintf(g.user, sizeof(g.user), "%s", user);
	snprintf(g.slice, sizeof(g.slice), "s1");
	snprintf(g.node, sizeof(g.node), "%s", node);
	snprintf(g.verb, sizeof(g.verb), "%s", verb);
	return g;
}

static void issue(struct ticket_table *t, const char *user, const char *node, long long now,
		  char out[TICKET_LEN + 1])
{
	struct ticket_grant g = grant(user, node, "stats");
	long long exp;
	struct vs_error err;
	assert_int_equal(tickets_issue(t, &g, now, out, &exp, &err), 0);
	assert_int_equal(exp, now + 30000);
}

static void test_single_use(void **state)
{
	(void)state;
	struct ticket_table t;
	tickets_init(&t, 0);
	char tk[TICKET_LEN + 1], tk2[TICKET_LEN + 1];
	issue(&t, "alice", "n1", 1000, tk);
	issue(&t, "alice", "n1", 1000, tk2);
	assert_int_equal(strlen(tk), TICKET_LEN);
	assert_memory_equal(tk, "vtk_", 4);
	assert_string_not_equal(tk, tk2);
	struct ticket_grant g;
	struct vs_error err;
	assert_int_equal(tickets_redeem(&t, tk, "n1", 2000, &g, &err), 0);
	assert_string_equal(g.user, "alice");
	assert_string_equal(g.slice, "s1");
	assert_string_equal(g.verb, "stats");
	assert_string_equal(g.node, "n1");
	assert_int_equal(tickets_redeem(&t, tk, "n1", 2000, &g, &err), -EACCES);
	assert_non_null(strstr(err.msg, "already used"));
	assert_string_equal(g.user, ""); /* nothing granted on a refusal */
	/* One character off: unknown. */
	tk2[10] = tk2[10] == 'a' ? 'b' : 'a';
	assert_int_equal(tickets_redeem(&t, tk2, "n1", 2000, &g, &err), -EACCES);
	assert_non_null(strstr(err.msg, "unknown"));
	assert_int_equal(tickets_redeem(&t, "vtk_zz", "n1", 2000, &g, &err), -EACCES);
	assert_non_null(strstr(err.msg, "malformed"));
	tickets_free(&t);
}

static void test_bound_to_node(void **state)
{
	(void)state;
	struct ticket_table t;
	tickets_init(&t, 0);
	char tk[TICKET_LEN + 1];
	issue(&t, "alice", "n1", 0, tk);
	struct ticket_grant g;
	struct vs_error err;
	assert_int_equal(tickets_redeem(&t, tk, "n2", 10, &g, &err), -EACCES);
	assert_non_null(strstr(err.msg, "another node"));
	/* Shown to the wrong node, it is spent: the right one cannot use it now. */
	assert_int_equal(tickets_redeem(&t, tk, "n1", 10, &g, &err), -EACCES);
	tickets_free(&t);
}

static void test_expiry_and_sweep(void **state)
{
	(void)state;
	struct ticket_table t;
	tickets_init(&t, 0);
	char tk[TICKET_LEN + 1], tk2[TICKET_LEN + 1];
	issue(&t, "alice", "n1", 0, tk);
	issue(&t, "alice", "n1", 0, tk2);
	struct ticket_grant g;
	struct vs_error err;
	assert_int_equal(tickets_redeem(&t, tk, "n1", 30000, &g, &err), -EACCES);
	assert_non_null(strstr(err.msg, "expired"));
	assert_int_equal(tickets_open(&t, NULL), 1);
	tickets_sweep(&t, 29999);
	assert_int_equal(tickets_open(&t, NULL), 1);
	tickets_sweep(&t, 30000);
	assert_int_equal(tickets_open(&t, NULL), 0);
	/* A shorter lifetime (the test registry's) is kept. */
	tickets_free(&t);
	tickets_init(&t, 5);
	struct ticket_grant g2 = grant("bob", "n1", "logs");
	long long exp;
	assert_int_equal(tickets_issue(&t, &g2, 100, tk, &exp, &err), 0);
	assert_int_equal(exp, 5100);
	tickets_free(&t);
}

static void test_caps(void **state)
{
	(void)state;
	struct ticket_table t;
	tickets_init(&t, 0);
	char tk[TICKET_LEN + 1];
	struct vs_error err;
	long long exp;
	for (int i = 0; i < TICKET_PER_USER; i++)
		issue(&t, "alice", "n1", 0, tk);
	struct ticket_grant g = grant("alice", "n1", "stats");
	assert_int_equal(tickets_issue(&t, &g, 0, tk, &exp, &err), -EAGAIN);
	assert_int_equal(err.kind, VS_EK_LIMIT);
	assert_non_null(strstr(err.msg, "user alice"));
	/* Another user is not held up by alice. */
	issue(&t, "bob", "n1", 0, tk);
	/* Redeeming frees a place. */
	struct ticket_grant got;
	char mine[TICKET_LEN + 1];
	tickets_sweep(&t, 0);
	issue(&t, "carol", "n1", 0, mine);
	assert_int_equal(tickets_redeem(&t, mine, "n1", 1, &got, &err), 0);
	/* The global cap: users of 64 each up to 4096 in all. */
	char user[16];
	int made = (int)tickets_open(&t, NULL), u = 0;
	while (made < TICKET_GLOBAL) {
		snprintf(user, sizeof(user), "u%d", u++);
		for (int i = 0; i < TICKET_PER_USER && made < TICKET_GLOBAL; i++, made++)
			issue(&t, user, "n1", 0, tk);
	}
	g = grant("zed", "n1", "stats");
	assert_int_equal(tickets_issue(&t, &g, 0, tk, &exp, &err), -EAGAIN);
	assert_int_equal(err.kind, VS_EK_LIMIT);
	assert_non_null(strstr(err.msg, "4096"));
	/* All of them expire together, and the table is free again. */
	assert_int_equal(tickets_issue(&t, &g, 30000, tk, &exp, &err), 0);
	assert_int_equal(tickets_open(&t, NULL), 1);
	tickets_free(&t);
}

static void test_bad_grants(void **state)
{
	(void)state;
	struct ticket_table t;
	tickets_init(&t, 0);
	char tk[TICKET_LEN + 1];
	struct vs_error err;
	long long exp;
	struct ticket_grant g = grant("alice", "n1", "destroy");
	assert_int_equal(tickets_issue(&t, &g, 0, tk, &exp, &err), -EINVAL);
	g = grant("alice", "", "stats");
	assert_int_equal(tickets_issue(&t, &g, 0, tk, &exp, &err), -EINVAL);
	assert_true(ticket_verb_valid("cp"));
	assert_false(ticket_verb_valid("stat"));
	assert_false(ticket_verb_valid(NULL));
	tickets_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_use),	     cmocka_unit_test(test_bound_to_node),
	    cmocka_unit_test(test_expiry_and_sweep), cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_bad_grants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * api_tickets.c - the registry's ticket endpoints (docs/cluster-api.md,
 * "Tickets"; the design in docs/cluster.md, "Remote verbs and tickets"):
 *
 *   POST /v1/slices/SLICE/tickets   a user (its own slice) or an admin:
 *                                   a ticket for one verb on one sliver
 *   POST /v1/tickets/redeem         a node token: redeem a ticket bound
 *                                   to that node (once)
 *
 * A node manager never sees a user token: the user shows the node a ticket,
 * the node asks the registry what it grants. The ticket table is in memory
 * (tickets.c) under reg->lock like every handler. Refusals at redeem are one
 * answer for every reason ("ticket refused"); the reason goes to the
 * registry's log only, so a node (or whoever holds a stolen ticket) learns
 * nothing about tickets it does not have.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "registry_int.h"
#include "vslice/units.h"
#include "vslice/util.h"

bool api_slice_own(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	struct vs_error err;
	cleanup_free char *owner = NULL;
	bool on_node;
	int r = store_slice_owner(req->reg, slice, NULL, &owner, &on_node, &err);
	if (r < 0 && r != -ENOENT) {
		api_db_fail(a, &err);
		return false;
	}
	bool mine =
	    r >= 0 &&
	    (req->role == REGISTRY_ROLE_ADMIN ||
	     (req->role == REGISTRY_ROLE_USER && req->user && strcmp(owner, req->user) == 0));
	if (!mine)
		api_error(a, 404, "slice %s: not found", slice);
	return mine;
}

/* The body's verb and node; false: a holds 400 naming the field. */
static bool ticket_args(struct reg_answer *a, json_t *b, const char *slice, const char **verb,
			const char **node)
{
	const char *k;
	json_t *v;
	char pb[80];
	json_object_foreach(b, k, v)
	{
		if (strcmp(k, "verb") != 0 && strcmp(k, "node") != 0) {
			api_error(a, 400, "ticket for %s: .%s: unknown field (verb, node)", slice,
				  vs_printable(k, pb, sizeof(pb)));
			return false;
		}
	}
	*verb = json_string_value(json_object_get(b, "verb"));
	if (!*verb || !ticket_verb_valid(*verb)) {
		api_error(
		    a, 400,
		    "ticket for %s: .verb: %s%s%s (exec, shell, stats, freeze, thaw, logs, cp)",
		    slice, *verb ? "\"" : "expected a verb",
		    *verb ? vs_printable(*verb, pb, sizeof(pb)) : "",
		    *verb ? "\" is not a verb a ticket names" : "");
		return false;
	}
	json_t *n = json_object_get(b, "node");
	if (n && !json_is_string(n) && !json_is_null(n)) {
		api_error(a, 400, "ticket for %s: .node: expected a node name", slice);
		return false;
	}
	*node = json_string_value(n);
	return !*node || api_check_node_name(a, *node);
}

/* The node the ticket is for: want, or the slice's only sliver's. *out
 * borrowed from v. false: a holds 409 listing the slice's nodes. */
static bool pick_node(struct reg_answer *a, const char *slice, const char *want,
		      const struct store_sliver *v, size_t n, const char **out)
{
	*out = NULL;
	for (size_t i = 0; i < n; i++)
		if (!want || strcmp(v[i].node, want) == 0)
			*out = v[i].node;
	if (*out && (want || n == 1))
		return true;
	char list[512] = "";
	size_t len = 0;
	for (size_t i = 0; i < n && len < sizeof(list) - 1; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
					v[i].node);
	if (n == 0)
		api_error(a, 409, "slice %s has no sliver", slice);
	else if (want)
		api_error(a, 409, "slice %s has no sliver on node %s (its nodes: %s)", slice, want,
			  list);
	else
		api_error(a, 409, "slice %s has %zu slivers: name one with --node (%s)", slice, n,
			  list);
	return false;
}

void api_ticket_create(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	struct registry *reg = req->reg;
	if (!api_need_role(req, a, true, true, false))
		return;
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	const char *verb, *want;
	if (!ticket_args(a, b, slice, &verb, &want) || !api_slice_own(req, a, slice))
		return;
	struct vs_error err;
	struct store_sliver *v = NULL;
	size_t n = 0;
	if (store_slivers_of(reg, slice, NULL, &v, &n, &err) < 0)
		return api_db_fail(a, &err);
	const char *node;
	if (!pick_node(a, slice, want, v, n, &node)) {
		store_slivers_free(v, n);
		return;
	}
	struct ticket_grant g = {0};
	snprintf(g.user, sizeof(g.user), "%s", req->user ? req->user : "admin");
	snprintf(g.slice, sizeof(g.slice), "%s", slice);
	snprintf(g.node, sizeof(g.node), "%s", node);
	snprintf(g.verb, sizeof(g.verb), "%s", verb);
	store_slivers_free(v, n);

	struct store_node sn;
	if (store_node_get(reg, g.node, &sn, &err) < 0)
		return err.code == ENOENT ? api_error(a, 409, "node %s is not registered", g.node)
					  : api_db_fail(a, &err);
	cleanup_free char *url = sn.url && *sn.url ? vs_xstrdup(sn.url) : NULL;
	store_node_clear(&sn);
	if (!url)
		return api_error(a, 409,
				 "node %s has no API URL (its node manager runs without --listen, "
				 "or a wildcard --listen without --advertise)",
				 g.node);

	char ticket[TICKET_LEN + 1];
	long long expires_ms;
	if (tickets_issue(&reg->tickets, &g, reg_wall_ms(), ticket, &expires_ms, &err) < 0)
		return api_error(a, err.kind == VS_EK_LIMIT ? 429 : 400, "ticket for %s: %s", slice,
				 err.msg);
	char when[32];
	time_t secs = (time_t)(expires_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	api_answer_json(a, 201,
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "ticket", ticket, "node",
				  g.node, "url", url, "verb", g.verb, "slice", g.slice, "expires",
				  when, "ttl", (int)(reg->tickets.ttl_ms / 1000)));
	explicit_bzero(ticket, sizeof(ticket));
}

void api_ticket_redeem(struct reg_request *req, struct reg_answer *a)
{
	struct registry *reg = req->reg;
	if (!api_need_role(req, a, false, false, true))
		return;
	if (!req->node)
		return api_error(a, 403, "ticket refused");
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	const char *ticket = json_string_value(json_object_get(b, "ticket"));
	if (!ticket)
		return api_error(a, 400, "redeem: .ticket: expected a ticket (vtk_...)");
	struct ticket_grant g;
	struct vs_error err;
	if (tickets_redeem(&reg->tickets, ticket, req->node, reg_wall_ms(), &g, &err) < 0) {
		fprintf(stderr, "vslice-registry: node %s: %s\n", req->node, err.msg);
		return api_error(a, 403, "ticket refused");
	}
	api_answer_json(a, 200,
			json_pack("{s:s, s:s, s:s, s:s}", "user", g.user, "slice", g.slice, "node",
				  g.node, "verb", g.verb));
}

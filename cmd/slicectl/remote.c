/*
 * remote.c - slicectl's verbs on one sliver in cluster mode, through the
 * sliver's node manager rather than the registry (docs/cluster.md, "Remote
 * verbs and tickets"):
 *
 *   stats NAME [--node N] [--window MS]
 *   freeze | thaw NAME [--node N]
 *   logs -f NAME --node N            (cluster.c's cl_logs hands over)
 *
 * Each asks the registry for a ticket (POST /v1/slices/NAME/tickets: this
 * verb, that node), then calls the node's API at the URL the registry gave
 * with the ticket as its bearer token, verifying an https:// node against
 * --ca (the cluster CA). cluster_node_connect() is the part the other
 * remote verbs (exec, shell, cp) share.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/http.h"
#include "vslice/nodeapi.h"
#include "vslice/json.h"
#include "vslice/regclient.h"
#include "vslice/units.h"
#include "vslice/util.h"

int cluster_node_connect(struct ctl *ctl, const char *verb, const char *slice, const char *node,
			 struct http_client *nc, char **node_out)
{
	memset(nc, 0, sizeof(*nc));
	if (node_out)
		*node_out = NULL;
	struct vs_error err;
	if (vs_check_name("slice", slice, &err) < 0)
		return ctl_usage(verb, "%s", err.msg);
	if (node && !vs_node_name_valid(node))
		return ctl_usage(verb, "--node: invalid node name \"%s\"", node);
	cleanup_http struct http_client rc;
	int r = cluster_connect(ctl, verb, &rc);
	if (r)
		return r;
	json_auto_t *t = NULL;
	long status = 0;
	if (regclient_ticket_create(&rc, slice, node, verb, &t, &status, &err) < 0)
		return ctl_fail(verb, status > 0 ? NULL : slice, &err);
	const char *ticket = json_string_value(json_object_get(t, "ticket"));
	const char *url = json_string_value(json_object_get(t, "url"));
	const char *got = json_string_value(json_object_get(t, "node"));
	if (!ticket || !url || !got || !vs_node_name_valid(got)) {
		vs_error_set(&err, EPROTO,
			     "the registry's ticket answer lacks ticket, url or node");
		return ctl_fail(verb, slice, &err);
	}
	if (http_client_init_peer(nc, url, ticket, ctl->ca_file, "node", &err) < 0) {
		memset(nc, 0, sizeof(*nc));
		vs_error_wrap(&err, "node %s", got);
		return ctl_fail(verb, slice, &err);
	}
	if (node_out)
		*node_out = vs_xstrdup(got);
	return 0;
}

static int node_fail(const char *verb, const char *slice, const char *node, long status,
		     struct vs_error *err)
{
	/* The node's own error names the sliver; a transport error gets the node. */
	if (status == 0)
		vs_error_wrap(err, "node %s", node);
	return ctl_fail(verb, status > 0 ? NULL : slice, err);
}

const char cluster_stats_help[] =
    "usage: slicectl stats NAME [--node NODE] [--window MS]\n\n"
    "Cluster mode: cpu, memory, pids and thread-level parallelism of the sliver on\n"
    "NODE (optional when the slice has one sliver), asked of that node's manager\n"
    "with a ticket from the registry (an https:// node is verified against --ca).\n"
    "--json: the same object as local `stats --json`.\n";

int cmd_stats_cluster(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, cluster_stats_help))
		return 0;
	static const struct option o[] = {
	    {"node", required_argument, NULL, 'n'}, {"window", required_argument, NULL, 'w'}, {0}};
	const char *node = NULL;
	long window = 1000;
	int c;
	while ((c = getopt_long(argc, argv, "n:w:", o, NULL)) != -1) {
		char *end;
		if (c == 'n') {
			node = optarg;
		} else if (c == 'w') {
			window = strtol(optarg, &end, 10);
			if (*end || window < 10 || window > 10000)
				return ctl_usage("stats", "--window: milliseconds, 10..10000");
		} else {
			return ctl_usage("stats", "unknown option");
		}
	}
	if (optind + 1 != argc)
		return ctl_usage("stats", optind >= argc ? "missing slice NAME" : "one NAME only");
	const char *name = argv[optind];
	cleanup_http struct http_client nc;
	cleanup_free char *on = NULL;
	int r = cluster_node_connect(ctl, "stats", name, node, &nc, &on);
	if (r)
		return r;
	char q[32];
	snprintf(q, sizeof(q), "?window=%ld", window);
	cleanup_free char *path = nodeapi_sliver_path(name, "stats", q);
	json_t *j = NULL;
	long status = 0;
	struct vs_error err;
	if (http_json(&nc, "GET", path, NULL, 0, &status, &j, NULL, &err) < 0) {
		json_decref(j);
		return node_fail("stats", name, on, status, &err);
	}
	return ctl_print_stats(ctl, j);
}

static int freeze_thaw(struct ctl *ctl, int argc, char **argv, const char *verb, const char *help)
{
	if (ctl_want_help(argc, argv, help))
		return 0;
	static const struct option o[] = {{"node", required_argument, NULL, 'n'}, {0}};
	const char *node = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "n:", o, NULL)) != -1) {
		if (c != 'n')
			return ctl_usage(verb, "unknown option");
		node = optarg;
	}
	if (optind + 1 != argc)
		return ctl_usage(verb, optind >= argc ? "missing slice NAME" : "one NAME only");
	const char *name = argv[optind];
	cleanup_http struct http_client nc;
	cleanup_free char *on = NULL;
	int r = cluster_node_connect(ctl, verb, name, node, &nc, &on);
	if (r)
		return r;
	cleanup_free char *path = nodeapi_sliver_path(name, verb, NULL);
	long status = 0;
	struct vs_error err;
	if (http_json(&nc, "POST", path, NULL, 0, &status, NULL, NULL, &err) < 0)
		return node_fail(verb, name, on, status, &err);
	return 0;
}

const char cluster_freeze_help[] =
    "usage: slicectl freeze NAME [--node NODE]\n\n"
    "Cluster mode: freeze every process of the sliver on NODE (optional when the\n"
    "slice has one sliver) through that node's manager, with a ticket from the\n"
    "registry. `slicectl stats` then shows \"frozen yes\"; thaw undoes it.\n";
const char cluster_thaw_help[] = "usage: slicectl thaw NAME [--node NODE]\n\n"
				 "Cluster mode: thaw the frozen sliver on NODE (optional when "
				 "the slice has one\nsliver), as freeze does.\n";

int cmd_freeze_cluster(struct ctl *ctl, int argc, char **argv)
{
	return freeze_thaw(ctl, argc, argv, "freeze", cluster_freeze_help);
}

int cmd_thaw_cluster(struct ctl *ctl, int argc, char **argv)
{
	return freeze_thaw(ctl, argc, argv, "thaw", cluster_thaw_help);
}

/* logs -f: the answer's bytes go through a pipe so they are counted (the
 * next round starts where this one ended). */
struct log_pump {
	int rd;
	unsigned long long bytes;
	bool out_failed;
};

static void *pump_main(void *arg)
{
	struct log_pump *p = arg;
	char buf[65536];
	for (;;) {
		ssize_t n = read(p->rd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!p->out_failed && vs_write_all(1, buf, (size_t)n) < 0)
			p->out_failed = true;
		p->bytes += (unsigned long long)n;
	}
	return NULL;
}

/* One GET .../logs?offset=O&follow=1 into stdout: *n bytes, *stopped when
 * the node said the sliver had stopped before it answered. */
static int logs_round(struct http_client *nc, const char *name, unsigned long long offset,
		      unsigned long long *n, bool *stopped, long *status, struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	struct log_pump pump = {.rd = p[0]};
	pthread_t th;
	if (pthread_create(&th, NULL, pump_main, &pump) != 0) {
		close(p[0]);
		close(p[1]);
		return vs_error_set(err, EAGAIN, "thread");
	}
	char q[64], state[32] = "";
	snprintf(q, sizeof(q), "?offset=%llu&follow=1", offset);
	cleanup_free char *path = nodeapi_sliver_path(name, "logs", q);
	int r = http_get_fd(nc, path, p[1], "X-Vslice-Sliver", state, sizeof(state), status, err);
	close(p[1]);
	pthread_join(th, NULL);
	close(p[0]);
	*n = pump.bytes;
	*stopped = strcmp(state, "running") != 0;
	if (r == 0 && pump.out_failed)
		return -EPIPE;
	return r;
}

int cluster_logs_follow(struct ctl *ctl, const char *name, const char *node)
{
	unsigned long long offset = 0;
	for (;;) {
		cleanup_http struct http_client nc;
		cleanup_free char *on = NULL;
		int r = cluster_node_connect(ctl, "logs", name, node, &nc, &on);
		if (r)
			return r;
		unsigned long long n = 0;
		bool stopped = false;
		long status = 0;
		struct vs_error err;
		r = logs_round(&nc, name, offset, &n, &stopped, &status, &err);
		if (r == -EPIPE)
			return 0; /* our reader went away (| head) */
		if (r < 0)
			return node_fail("logs", name, on, status, &err);
		offset += n;
		/* A round ends when the sliver stops, or after a quiet spell (the
		 * node's LOG_FOLLOW_QUIET): ask again unless it had stopped. */
		if (stopped)
			return 0;
	}
}

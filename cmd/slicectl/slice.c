/*
 * slice.c - slicectl's lifecycle verbs: create, start, run, stop, kill,
 * freeze, thaw, destroy.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/manifest.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define CREATE_OPTS_HELP                                                                           \
	"  --image IMG        root file system image (default busybox)\n"                          \
	"  --cpus N           cpu quota, e.g. 0.5 or 2\n"                                          \
	"  --memory SIZE      memory limit, e.g. 256M (an OOM kills inside the slice only)\n"      \
	"  --pids N           maximum number of processes and threads\n"                           \
	"  --disk SIZE        disk limit for the slice's files, e.g. 1G (its own file system;\n"   \
	"                     a write past it fails with ENOSPC; at least 16M)\n"                  \
	"  --log-size SIZE    detached output kept on disk: the last SIZE (default 16M)\n"         \
	"  --policy P         seccomp policy: default, strict, unconfined or FILE.json\n"          \
	"  --net MODE         none (loopback only, default), host, bridge (own address\n"          \
	"                     behind the node's bridge, NAT out) or bridge,no-egress\n"            \
	"  --publish H:S[/udp] node port H answers for slice port S (bridge; repeatable)\n"        \
	"  --net-rate RATE    cap in each direction, e.g. 10mbit (bridge)\n"                       \
	"  --env K=V          environment variable (repeatable)\n"                                 \
	"  --workdir DIR      working directory inside the slice (default /)\n"                    \
	"  --hostname H       hostname (default: the slice name)\n"                                \
	"  --lifetime D       the slice ends after D, e.g. 2h or 14d\n"                            \
	"  --timeout D        kill the command after D (exit code 124)\n"                          \
	"  --restart N        restart the command up to N times when it fails\n"                   \
	"cluster mode (--registry): where the slivers go (default: one, on the least\n"            \
	"loaded ready node); the slivers start at once, create included:\n"                        \
	"  --nodes N          N slivers, on N different nodes\n"                                   \
	"  --node NODE        a sliver on NODE (repeatable)\n"

static const struct option create_opts[] = {
    {"image", required_argument, NULL, 'i'},
    {"cpus", required_argument, NULL, 'c'},
    {"memory", required_argument, NULL, 'm'},
    {"pids", required_argument, NULL, 'p'},
    {"disk", required_argument, NULL, 'D'},
    {"log-size", required_argument, NULL, 'L'},
    {"policy", required_argument, NULL, 'P'},
    {"net", required_argument, NULL, 'n'},
    {"publish", required_argument, NULL, 'B'},
    {"net-rate", required_argument, NULL, 'T'},
    {"env", required_argument, NULL, 'e'},
    {"workdir", required_argument, NULL, 'w'},
    {"hostname", required_argument, NULL, 'H'},
    {"lifetime", required_argument, NULL, 'l'},
    {"timeout", required_argument, NULL, 't'},
    {"restart", required_argument, NULL, 'R'},
    {"nodes", required_argument, NULL, 'N'},
    {"node", required_argument, NULL, 'o'},
    {"rm", no_argument, NULL, 'X'},
    {"detach", no_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

struct create_args {
	struct slice_spec spec;
	bool rm, detach;
	size_t nenv;
	bool hostname_given;
	unsigned nodes;	   /* --nodes N (cluster mode), 0 = not given */
	char **node_names; /* --node NODE..., NULL-terminated, or NULL */
	size_t nnode_names;
};

static void create_args_free(struct create_args *a)
{
	slice_spec_free(&a->spec);
	vs_strv_free(a->node_names);
	a->node_names = NULL;
}

static int parse_u64_opt(const char *verb, const char *opt, const char *v, uint64_t max,
			 uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (!*v || *end || errno || x > max || v[0] == '-')
		return ctl_usage(verb, "%s: invalid number \"%s\" (1..%llu)", opt, v,
				 (unsigned long long)max);
	*out = x;
	return 0;
}

/* Parse create/run options and NAME [-- CMD...]; run-only flags when allow_run. */
/* K=V whose K vslice sets itself (manifest.h). */
static bool env_reserved(const char *kv)
{
	static const char *const reserved[] = MANIFEST_ENV_RESERVED;
	size_t kl = strcspn(kv, "=");
	for (size_t i = 0; reserved[i]; i++)
		if (strlen(reserved[i]) == kl && !strncmp(kv, reserved[i], kl))
			return true;
	return false;
}

static int parse_create(const char *verb, int argc, char **argv, bool allow_run,
			struct create_args *a)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->spec.image, sizeof(a->spec.image), "busybox");
	int split = ctl_split(argc, argv);
	int c;
	struct vs_error err;
	a->spec.env = vs_xcalloc((size_t)argc + 1, sizeof(char *));
	while ((c = getopt_long(split, argv, allow_run ? "d" : "", create_opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (strlen(optarg) >= sizeof(a->spec.image) || !vs_name_valid(optarg))
				return ctl_usage(verb, "--image: invalid image name \"%s\"",
						 optarg);
			snprintf(a->spec.image, sizeof(a->spec.image), "%s", optarg);
			break;
		case 'c':
			if (vs_parse_cpus(optarg, &a->spec.cpu_millis, &err) < 0)
				return ctl_usage(verb, "--cpus: %s", err.msg);
			break;
		case 'm':
			if (vs_parse_size(optarg, &a->spec.memory_bytes, &err) < 0)
				return ctl_usage(verb, "--memory: %s", err.msg);
			break;
		case 'D':
			if (vs_parse_size(optarg, &a->spec.disk_bytes, &err) < 0)
				return ctl_usage(verb, "--disk: %s", err.msg);
			if (!a->spec.disk_bytes)
				return ctl_usage(verb, "--disk: must be at least 16M");
			break;
		case 'L':
			if (vs_parse_size(optarg, &a->spec.log_max_bytes, &err) < 0)
				return ctl_usage(verb, "--log-size: %s", err.msg);
			if (!a->spec.log_max_bytes)
				return ctl_usage(verb, "--log-size: must be at least 64K");
			break;
		case 'p':
			if (parse_u64_opt(verb, "--pids", optarg, 1u << 22, &a->spec.pids_max))
				return EXIT_VSLICE;
			if (!a->spec.pids_max)
				return ctl_usage(verb, "--pids: must be at least 1");
			break;
		case 'P':
			free(a->spec.policy);
			if (strchr(optarg, '/') || strstr(optarg, ".json")) {
				char *abs = realpath(optarg, NULL);
				if (!abs)
					return ctl_usage(verb, "--policy: %s: %s", optarg,
							 strerror(errno));
				a->spec.policy = abs;
			} else {
				a->spec.policy = vs_xstrdup(optarg);
			}
			break;
		case 'n': {
			bool bridge;
			if (netcfg_parse_mode(optarg, &bridge, &a->spec.netopts, &err) < 0)
				return ctl_usage(verb, "--net: %s", err.msg);
			a->spec.net = bridge			? SLICE_NET_BRIDGE
				      : !strcmp(optarg, "host") ? SLICE_NET_HOST
								: SLICE_NET_NONE;
			break;
		}
		case 'B':
			if (a->spec.netopts.n_publish >= NETCFG_PUBLISH_MAX)
				return ctl_usage(verb, "--publish: at most %d ports",
						 NETCFG_PUBLISH_MAX);
			if (netcfg_parse_publish(
				optarg, &a->spec.netopts.publish[a->spec.netopts.n_publish], &err) <
			    0)
				return ctl_usage(verb, "--%s", err.msg);
			a->spec.netopts.n_publish++;
			break;
		case 'T':
			if (netcfg_parse_rate(optarg, &a->spec.netopts.rate_bps, &err) < 0)
				return ctl_usage(verb, "--net-%s", err.msg);
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return ctl_usage(verb, "--env: \"%s\" is not K=V", optarg);
			if (env_reserved(optarg))
				return ctl_usage(
				    verb,
				    "--env %.*s: set by vslice in every slice (where it "
				    "runs); choose another name",
				    (int)(strchr(optarg, '=') - optarg), optarg);
			a->spec.env[a->nenv++] = vs_xstrdup(optarg);
			break;
		case 'w':
			if (optarg[0] != '/')
				return ctl_usage(verb, "--workdir: \"%s\" is not an absolute path",
						 optarg);
			free(a->spec.workdir);
			a->spec.workdir = vs_xstrdup(optarg);
			break;
		case 'N': {
			uint64_t n;
			if (parse_u64_opt(verb, "--nodes", optarg, 10000, &n))
				return EXIT_VSLICE;
			if (!n)
				return ctl_usage(verb, "--nodes: must be at least 1");
			a->nodes = (unsigned)n;
			break;
		}
		case 'o':
			if (!vs_node_name_valid(optarg))
				return ctl_usage(verb, "--node: \"%s\" is not a node name", optarg);
			a->node_names =
			    vs_xrealloc(a->node_names, (a->nnode_names + 2) * sizeof(char *));
			a->node_names[a->nnode_names++] = vs_xstrdup(optarg);
			a->node_names[a->nnode_names] = NULL;
			break;
		case 'H':
			a->hostname_given = true;
			if (strlen(optarg) >= sizeof(a->spec.hostname))
				return ctl_usage(verb, "--hostname: longer than 63 characters");
			snprintf(a->spec.hostname, sizeof(a->spec.hostname), "%s", optarg);
			break;
		case 'l':
			if (vs_parse_duration(optarg, &a->spec.lifetime_secs, &err) < 0)
				return ctl_usage(verb, "--lifetime: %s", err.msg);
			break;
		case 't':
			if (vs_parse_duration(optarg, &a->spec.timeout_secs, &err) < 0)
				return ctl_usage(verb, "--timeout: %s", err.msg);
			break;
		case 'R': {
			uint64_t n;
			if (parse_u64_opt(verb, "--restart", optarg, 1000, &n))
				return EXIT_VSLICE;
			a->spec.restart_max = (unsigned)n;
			break;
		}
		case 'X':
			if (!allow_run)
				return ctl_usage(verb, "--rm is only for run");
			a->rm = true;
			break;
		case 'd':
			if (!allow_run)
				return ctl_usage(verb, "-d is only for run");
			a->detach = true;
			break;
		default:
			return ctl_usage(verb, "unknown option");
		}
	}
	if (optind >= split)
		return ctl_usage(verb, "missing slice NAME");
	if (optind + 1 < split)
		return ctl_usage(verb, "unexpected \"%s\" (put the command after --)",
				 argv[optind + 1]);
	const char *name = argv[optind];
	if (vs_check_name("slice", name, &err) < 0)
		return ctl_fail(verb, name, &err);
	snprintf(a->spec.name, sizeof(a->spec.name), "%s", name);
	if (split < argc) {
		if (split + 1 >= argc)
			return ctl_usage(verb, "empty command after --");
		int n = argc - split - 1;
		a->spec.argv = vs_xcalloc((size_t)n + 1, sizeof(char *));
		for (int i = 0; i < n; i++)
			a->spec.argv[i] = vs_xstrdup(argv[split + 1 + i]);
	}
	if (allow_run && !a->spec.argv)
		return ctl_usage(verb, "missing command (slicectl %s NAME -- CMD ARG...)", verb);
	if (a->nodes && a->node_names)
		return ctl_usage(verb, "--nodes and --node cannot be combined");
	return 0;
}

/* Local mode runs here: --nodes 1 and --node local are all it takes. Where
 * am I: the slice's environment gets VSLICE_SLICE and VSLICE_NODE=local
 * (a sliver made from a manifest gets its peers too: experiment.h). */
static int check_local_placement(const char *verb, struct create_args *a)
{
	a->spec.env = vs_xrealloc(a->spec.env, (a->nenv + 3) * sizeof(char *));
	a->spec.env[a->nenv++] = vs_xasprintf("VSLICE_SLICE=%s", a->spec.name);
	a->spec.env[a->nenv++] = vs_xstrdup("VSLICE_NODE=local");
	a->spec.env[a->nenv] = NULL;
	if (a->nodes > 1)
		return ctl_usage(verb,
				 "--nodes %u: needs cluster mode (--registry URL); local "
				 "mode runs one sliver here",
				 a->nodes);
	for (size_t i = 0; i < a->nnode_names; i++)
		if (strcmp(a->node_names[i], "local"))
			return ctl_usage(verb, "--node %s: needs cluster mode (--registry URL)",
					 a->node_names[i]);
	return 0;
}

/*
 * Cluster mode: the options become a manifest (docs/manifest.md) that is
 * submitted like `slicectl submit` would. A policy file is inlined.
 */
static int cluster_create_run(struct ctl *ctl, const char *verb, struct create_args *a, bool wait)
{
	const struct slice_spec *sp = &a->spec;
	if (a->hostname_given)
		return ctl_usage(verb, "--hostname: not in cluster mode (a sliver's hostname is "
				       "its slice's name)");
	if (sp->restart_max && !sp->argv)
		return ctl_usage(verb, "--restart: needs a command");
	json_t *m = json_pack("{s:s, s:s, s:s}", "apiVersion", "vslice/v1", "slice", sp->name,
			      "image", sp->image);
	json_t *res = json_object();
	char buf[64];
	if (sp->cpu_millis) {
		snprintf(buf, sizeof(buf), "%llu.%03llu", (unsigned long long)sp->cpu_millis / 1000,
			 (unsigned long long)sp->cpu_millis % 1000);
		json_object_set_new(res, "cpus", json_string(buf));
	}
	if (sp->memory_bytes)
		json_object_set_new(res, "memory", json_integer((json_int_t)sp->memory_bytes));
	if (sp->pids_max)
		json_object_set_new(res, "pids", json_integer((json_int_t)sp->pids_max));
	if (sp->disk_bytes)
		json_object_set_new(res, "disk", json_integer((json_int_t)sp->disk_bytes));
	json_object_set_new(m, "resources", res);
	struct vs_error err;
	if (sp->policy && sp->policy[0] == '/') {
		json_error_t je;
		json_t *pol = json_load_file(sp->policy, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(pol)) {
			json_decref(pol);
			json_decref(m);
			vs_error_set(&err, EINVAL, "--policy: %s: %s", sp->policy, je.text);
			return ctl_fail(verb, sp->name, &err);
		}
		json_object_set_new(m, "policy", pol);
	} else if (sp->policy) {
		json_object_set_new(m, "policy", json_string(sp->policy));
	}
	static const char *const nets[] = {"none", "host", "bridge"};
	const struct netcfg_slice *no = &sp->netopts;
	if (no->ip[0])
		return ctl_usage(verb, "--net: ip=: in cluster mode the registry gives addresses");
	const char *mode =
	    sp->net == SLICE_NET_BRIDGE && no->no_egress ? "bridge,no-egress" : nets[sp->net];
	if (sp->net == SLICE_NET_BRIDGE && (no->n_publish || no->rate_bps)) {
		json_t *net = json_pack("{s:s, s:[]}", "mode", mode, "publish");
		for (size_t i = 0; i < no->n_publish; i++)
			json_array_append_new(json_object_get(net, "publish"),
					      json_sprintf("%u:%u/%s", no->publish[i].host_port,
							   no->publish[i].slice_port,
							   no->publish[i].udp ? "udp" : "tcp"));
		char rate[32];
		if (no->rate_bps)
			json_object_set_new(
			    net, "rate",
			    json_string(netcfg_format_rate(no->rate_bps, rate, sizeof(rate))));
		json_object_set_new(m, "network", net);
	} else {
		json_object_set_new(m, "network", json_string(mode));
	}
	json_t *env = json_object();
	for (char **e = sp->env; e && *e; e++) {
		char *eq = strchr(*e, '=');
		cleanup_free char *k = vs_xasprintf("%.*s", (int)(eq - *e), *e);
		json_object_set_new(env, k, json_string(eq + 1));
	}
	json_object_set_new(m, "env", env);
	json_t *run = json_object(), *cmd = json_array();
	for (char **v = sp->argv; v && *v; v++)
		json_array_append_new(cmd, json_string(*v));
	if (!sp->argv)
		json_array_append_new(cmd, json_string("/bin/sh"));
	json_object_set_new(run, "command", cmd);
	if (sp->workdir)
		json_object_set_new(run, "workdir", json_string(sp->workdir));
	if (sp->timeout_secs) {
		snprintf(buf, sizeof(buf), "%llus", (unsigned long long)sp->timeout_secs);
		json_object_set_new(run, "timeout", json_string(buf));
	}
	if (sp->restart_max) {
		json_object_set_new(run, "restart", json_string("on-failure"));
		json_object_set_new(run, "restart_limit", json_integer(sp->restart_max));
	}
	json_object_set_new(m, "run", run);
	if (sp->lifetime_secs) {
		snprintf(buf, sizeof(buf), "%llus", (unsigned long long)sp->lifetime_secs);
		json_object_set_new(m, "lifetime", json_string(buf));
	}
	if (a->nodes)
		json_object_set_new(m, "nodes", json_pack("{s:i}", "count", (int)a->nodes));
	if (a->node_names) {
		json_t *names = json_array();
		for (size_t i = 0; i < a->nnode_names; i++)
			json_array_append_new(names, json_string(a->node_names[i]));
		json_object_set_new(m, "nodes", json_pack("{s:o}", "names", names));
	}
	int r = cluster_submit_resolved(ctl, verb, sp->name, m, wait, a->rm);
	json_decref(m);
	return r;
}

static const char create_help[] =
    "usage: slicectl create NAME [options] [-- CMD ARG...]\n\n"
    "Create a slice: an isolated, resource-limited environment. It is not\n"
    "started; see slicectl start. The default command is /bin/sh.\n\noptions:\n" CREATE_OPTS_HELP;

int cmd_create(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, create_help))
		return 0;
	struct create_args a;
	int r = parse_create("create", argc, argv, false, &a);
	if (r == 0 && ctl->registry && *ctl->registry) {
		r = cluster_create_run(ctl, "create", &a, false);
	} else if (r == 0 && (r = check_local_placement("create", &a)) == 0) {
		struct vs_error err;
		if (slice_create(ctl->root, &a.spec, &err) < 0)
			r = ctl_fail("create", a.spec.name, &err);
		else if (!ctl->quiet)
			printf("%s\n", a.spec.name);
	}
	create_args_free(&a);
	return r;
}

static const char run_help[] =
    "usage: slicectl run [--rm] [-d] NAME [options] -- CMD ARG...\n\n"
    "Create and start a slice running CMD. Without -d, waits for CMD with its\n"
    "input and output on this terminal and exits with its exit code.\n\n"
    "  --rm               destroy the slice when CMD ends\n"
    "  -d, --detach       return once started; output goes to slicectl "
    "logs\n\noptions:\n" CREATE_OPTS_HELP;

int cmd_run(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, run_help))
		return 0;
	struct create_args a;
	int r = parse_create("run", argc, argv, true, &a);
	if (r == 0 && a.rm && a.detach)
		r = ctl_usage("run", "--rm and -d cannot be combined");
	if (r == 0 && ctl->registry && *ctl->registry)
		r = cluster_create_run(ctl, "run", &a, !a.detach);
	else if (r == 0 && (r = check_local_placement("run", &a)) == 0)
		r = -1; /* local: go on below */
	if (r >= 0) {
		create_args_free(&a);
		return r;
	}
	vs_strv_free(a.node_names);
	a.node_names = NULL;
	struct vs_error err;
	char name[SLICE_NAME_MAX];
	snprintf(name, sizeof(name), "%s", a.spec.name);
	a.spec.ephemeral = a.rm;
	if (slice_create(ctl->root, &a.spec, &err) < 0) {
		slice_spec_free(&a.spec);
		return ctl_fail("run", name, &err);
	}
	slice_spec_free(&a.spec);
	/* The workload gets our terminal's signals through its PID 1; we wait. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	struct slice_start_opts o = {
	    .foreground = !a.detach, .stdin_fd = 0, .stdout_fd = 1, .stderr_fd = 2};
	int code = 0;
	if (slice_start(ctl->root, name, &o, &err) < 0) {
		code = EXIT_VSLICE;
		if (err.kind == VS_EK_EXEC_NOT_FOUND)
			code = 127;
		else if (err.kind == VS_EK_EXEC_DENIED)
			code = 126;
		ctl_fail("run", name, &err);
	} else if (!a.detach) {
		struct slice_state st;
		if (slice_wait(ctl->root, name, &code, &st, &err) < 0)
			code = ctl_fail("run", name, &err);
		else if (slice_exit_reason_text(st.exit_reason))
			/* The workload's own exit says nothing of a kill from outside. */
			fprintf(stderr, "slicectl: run %s: %s (exit %d)\n", name,
				slice_exit_reason_text(st.exit_reason), code);
	} else if (!ctl->quiet) {
		printf("%s\n", name);
	}
	if (a.rm || (a.detach && code != 0)) {
		struct vs_error e2;
		if (slice_destroy(ctl->root, name, true, &e2) < 0)
			ctl_fail("run", name, &e2);
	}
	return code;
}

static const char start_help[] =
    "usage: slicectl start NAME\n\nStart a created (or exited) slice, detached; its output goes\n"
    "to slicectl logs NAME.\n";

/* Verbs of the form "VERB NAME" with no options. */
static int one_name(const char *verb, int argc, char **argv, const char *help, const char **name)
{
	if (ctl_want_help(argc, argv, help))
		return -1;
	if (argc < 2)
		return ctl_usage(verb, "missing slice NAME");
	if (argc > 2)
		return ctl_usage(verb, "unexpected \"%s\"", argv[2]);
	if (argv[1][0] == '-')
		return ctl_usage(verb, "unknown option \"%s\"", argv[1]);
	*name = argv[1];
	return 0;
}

int cmd_start(struct ctl *ctl, int argc, char **argv)
{
	const char *name;
	int r = one_name("start", argc, argv, start_help, &name);
	if (r)
		return r < 0 ? 0 : r;
	struct vs_error err;
	struct slice_start_opts o = {.foreground = false};
	if (slice_start(ctl->root, name, &o, &err) < 0)
		return ctl_fail("start", name, &err);
	return 0;
}

static const char stop_help[] =
    "usage: slicectl stop NAME [--timeout SECONDS]\n\n"
    "SIGTERM to the slice's workload; SIGKILL to everything in it after\n"
    "--timeout seconds (default 10).\n";

int cmd_stop(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, stop_help))
		return 0;
	static const struct option o[] = {{"timeout", required_argument, NULL, 't'}, {0}};
	uint64_t timeout = 10;
	int c;
	while ((c = getopt_long(argc, argv, "t:", o, NULL)) != -1) {
		if (c != 't')
			return ctl_usage("stop", "unknown option");
		if (parse_u64_opt("stop", "--timeout", optarg, 3600, &timeout))
			return EXIT_VSLICE;
	}
	if (optind + 1 != argc)
		return ctl_usage("stop", optind >= argc ? "missing slice NAME" : "one NAME only");
	struct vs_error err;
	if (slice_stop(ctl->root, argv[optind], (unsigned)timeout, &err) < 0)
		return ctl_fail("stop", argv[optind], &err);
	return 0;
}

static const char kill_help[] = "usage: slicectl kill NAME [SIGNAL]\n\nSend SIGNAL (name or "
				"number, default KILL) to the slice's workload.\n";

static int parse_signal(const char *s)
{
	static const struct {
		const char *n;
		int s;
	} sigs[] = {
	    {"HUP", SIGHUP},   {"INT", SIGINT},	  {"QUIT", SIGQUIT},   {"KILL", SIGKILL},
	    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"CONT", SIGCONT},
	    {"STOP", SIGSTOP}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH},
	};
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < VS_ARRAY_SIZE(sigs); i++)
		if (!strcasecmp(s, sigs[i].n))
			return sigs[i].s;
	char *end;
	long v = strtol(s, &end, 10);
	return (*s && !*end && v > 0 && v < NSIG) ? (int)v : -1;
}

int cmd_kill(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, kill_help))
		return 0;
	if (argc < 2 || argc > 3)
		return ctl_usage("kill", argc < 2 ? "missing slice NAME" : "too many arguments");
	int sig = SIGKILL;
	if (argc == 3 && (sig = parse_signal(argv[2])) < 0)
		return ctl_usage("kill", "unknown signal \"%s\"", argv[2]);
	struct vs_error err;
	if (slice_kill(ctl->root, argv[1], sig, &err) < 0)
		return ctl_fail("kill", argv[1], &err);
	return 0;
}

int cmd_freeze(struct ctl *ctl, int argc, char **argv)
{
	const char *name;
	int r = one_name(
	    "freeze", argc, argv,
	    "usage: slicectl freeze NAME\n\nFreeze every process of the slice (cgroup freezer).\n"
	    "Cluster mode (--registry): slicectl freeze NAME [--node NODE], at the sliver's "
	    "node.\n",
	    &name);
	if (r)
		return r < 0 ? 0 : r;
	struct vs_error err;
	return slice_freeze(ctl->root, name, &err) < 0 ? ctl_fail("freeze", name, &err) : 0;
}

int cmd_thaw(struct ctl *ctl, int argc, char **argv)
{
	const char *name;
	int r = one_name("thaw", argc, argv,
			 "usage: slicectl thaw NAME\n\nThaw a frozen slice.\n"
			 "Cluster mode (--registry): slicectl thaw NAME [--node NODE], at the "
			 "sliver's node.\n",
			 &name);
	if (r)
		return r < 0 ? 0 : r;
	struct vs_error err;
	return slice_thaw(ctl->root, name, &err) < 0 ? ctl_fail("thaw", name, &err) : 0;
}

static const char destroy_help[] =
    "usage: slicectl destroy [--force] NAME...\n\n"
    "Remove slices: their processes, cgroups, file system layer, state and id\n"
    "range. A running slice needs --force. --force also cleans up what a crashed\n"
    "create left behind.\n";

int cmd_destroy(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, destroy_help))
		return 0;
	static const struct option o[] = {{"force", no_argument, NULL, 'f'}, {0}};
	bool force = false;
	int c;
	while ((c = getopt_long(argc, argv, "f", o, NULL)) != -1) {
		if (c != 'f')
			return ctl_usage("destroy", "unknown option");
		force = true;
	}
	if (optind >= argc)
		return ctl_usage("destroy", "missing slice NAME");
	int rc = 0;
	for (int i = optind; i < argc; i++) {
		struct vs_error err;
		if (slice_destroy(ctl->root, argv[i], force, &err) < 0)
			rc = ctl_fail("destroy", argv[i], &err);
	}
	return rc;
}

static const char renew_help[] =
    "usage: slicectl renew NAME --lifetime D\n\n"
    "The slice now ends D from now (e.g. 2h, 14d) instead of at the end of the\n"
    "lifetime it was created with. A running slice's PID 1 is told at once;\n"
    "a stopped one keeps it for its next start. Prints \"NAME: expires TIME\" (UTC).\n";

int cmd_renew(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, renew_help))
		return 0;
	static const struct option o[] = {{"lifetime", required_argument, NULL, 'l'}, {0}};
	uint64_t secs = 0;
	struct vs_error err;
	int c;
	while ((c = getopt_long(argc, argv, "l:", o, NULL)) != -1) {
		if (c != 'l')
			return ctl_usage("renew", "unknown option");
		if (vs_parse_duration(optarg, &secs, &err) < 0)
			return ctl_usage("renew", "--lifetime: %s", err.msg);
		if (secs == 0)
			return ctl_usage("renew", "--lifetime: must be more than 0");
	}
	if (optind + 1 != argc)
		return ctl_usage("renew", optind >= argc ? "missing slice NAME" : "one NAME only");
	if (!secs)
		return ctl_usage("renew", "missing --lifetime D (e.g. 14d)");
	const char *name = argv[optind];
	time_t expires = time(NULL) + (time_t)secs;
	if (slice_renew(ctl->root, name, expires, &err) < 0)
		return ctl_fail("renew", name, &err);
	if (!ctl->quiet) {
		struct tm tm;
		char t[32];
		gmtime_r(&expires, &tm);
		strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%s: expires %s\n", name, t);
	}
	return 0;
}

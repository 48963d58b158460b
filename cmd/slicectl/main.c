/*
 * slicectl - the vslice command line. Global options, then a verb; each verb
 * lives in its own file. Local mode (no registry) acts on this machine
 * through libvslice directly; no daemon is involved. Cluster mode (--registry
 * URL or $VSLICE_REGISTRY) sends the verbs that have a cluster form to the
 * registry (cluster.c) and refuses the others.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/nodemgr.h"
#include "vslice_version.h"
#include "vslice/slice.h"
#include "vslice/sliver.h"
#include "vslice/units.h"

int ctl_fail(const char *verb, const char *obj, const struct vs_error *err)
{
	/* One line, whatever the user typed or a file held. */
	char o[128], m[VS_ERROR_MAX];
	vs_printable(err->msg, m, sizeof(m));
	if (obj)
		fprintf(stderr, "slicectl: %s %s: %s\n", verb, vs_printable(obj, o, sizeof(o)), m);
	else
		fprintf(stderr, "slicectl: %s: %s\n", verb, m);
	return EXIT_VSLICE;
}

/* The verb's argv, so a getopt failure can name the offending word. */
static char **verb_argv;

int ctl_usage(const char *verb, const char *fmt, ...)
{
	char buf[512], shown[512];
	if (!strcmp(fmt, "unknown option") && verb_argv && optind > 0 && verb_argv[optind - 1]) {
		fprintf(stderr,
			"slicectl: %s: unknown option or missing value: \"%s\" (see: slicectl %s "
			"--help)\n",
			verb, vs_printable(verb_argv[optind - 1], shown, sizeof(shown)), verb);
		return EXIT_VSLICE;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "slicectl: %s: %s (see: slicectl %s --help)\n", verb,
		vs_printable(buf, shown, sizeof(shown)), verb);
	return EXIT_VSLICE;
}

int ctl_split(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--"))
			return i;
	return argc;
}

bool ctl_want_help(int argc, char **argv, const char *help)
{
	int end = ctl_split(argc, argv);
	for (int i = 1; i < end; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help, stdout);
			return true;
		}
	return false;
}

/* -h or --help among the verb's own options (before "--"). */
static bool asks_help(int argc, char **argv)
{
	int end = ctl_split(argc, argv);
	for (int i = 1; i < end; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

static const struct {
	const char *name;
	ctl_verb_fn fn; /* NULL: a weak verb, looked up in verb_fn() */
	const char *summary;
} verbs[] = {
    {"image", cmd_image, "build, import, list and remove images"},
    {"create", cmd_create, "create a slice (does not start it)"},
    {"start", cmd_start, "start a created or exited slice, detached"},
    {"run", cmd_run, "create + start; waits for the command unless -d"},
    {"exec", cmd_exec, "run a command inside a running slice"},
    {"shell", cmd_shell, "interactive shell in a running slice"},
    {"cp", cmd_cp, "copy files between the host and a slice (NAME:/path)"},
    {"stop", cmd_stop, "SIGTERM the slice, SIGKILL after --timeout"},
    {"kill", cmd_kill, "send a signal to the slice's workload"},
    {"freeze", cmd_freeze, "freeze every process of the slice"},
    {"thaw", cmd_thaw, "thaw a frozen slice"},
    {"destroy", cmd_destroy, "remove a slice: processes, cgroups, state"},
    {"renew", cmd_renew, "move the end of a slice's lifetime"},
    {"list", cmd_list, "list slices"},
    {"show", cmd_show, "spec and status of a slice"},
    {"logs", cmd_logs, "output of a detached slice"},
    {"stats", cmd_stats, "cpu, memory, pids and thread-level parallelism"},
    {"validate", NULL, "check an experiment manifest"},
    {"submit", NULL, "run an experiment manifest"},
    {"status", NULL, "per-sliver state of an experiment"},
    {"results", NULL, "copy an experiment's result files out"},
    {"checkpoint", NULL, "checkpoint a running slice to a directory"},
    {"restore", NULL, "restore a slice from a checkpoint"},
};

static ctl_verb_fn verb_fn(size_t i)
{
	const char *n = verbs[i].name;
	if (verbs[i].fn)
		return verbs[i].fn;
	if (!strcmp(n, "validate"))
		return cmd_validate;
	if (!strcmp(n, "submit"))
		return cmd_submit;
	if (!strcmp(n, "status"))
		return cmd_status;
	if (!strcmp(n, "results"))
		return cmd_results;
	if (!strcmp(n, "checkpoint"))
		return cmd_checkpoint;
	if (!strcmp(n, "restore"))
		return cmd_restore;
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: slicectl [--root DIR] [--registry URL] [--token T] [--ca FILE] [--json] [-q]\n"
	    "                [-v] VERB ...\n\n"
	    "Slices are named, isolated, resource-limited environments (PlanetLab's model).\n"
	    "Without a registry, slicectl manages slices on this machine directly.\n\nlocal "
	    "verbs:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verb_fn(i))
			fprintf(f, "  %-11s %s\n", verbs[i].name, verbs[i].summary);
	cluster_usage(f);
	fprintf(
	    f,
	    "\nEvery verb takes --help. State: --root or $VSLICE_ROOT (default /var/lib/vslice).\n"
	    "Exit codes: 0 ok, the workload's code for run/exec, 125 vslice error,\n"
	    "126 cannot execute, 127 command not found.\n");
}

int main(int argc, char **argv)
{
	struct ctl ctl = {
	    .root = slice_default_root(),
	    .registry = getenv("VSLICE_REGISTRY"),
	    .token = getenv("VSLICE_TOKEN"),
	    .ca_file = getenv("VSLICE_CA"),
	};
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"registry", required_argument, NULL, 'R'},
	    {"token", required_argument, NULL, 'T'},
	    /* an https:// registry's CA (else the system's) */
	    {"ca", required_argument, NULL, 'C'},
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;
	/* '+': stop at the verb; its options are its own. */
	while ((c = getopt_long(argc, argv, "+qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl.root = optarg;
			break;
		case 'R':
			ctl.registry = optarg;
			break;
		case 'T':
			ctl.token = optarg;
			break;
		case 'C':
			ctl.ca_file = optarg;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'q':
			ctl.quiet = true;
			break;
		case 'v':
			ctl.verbose++;
			break;
		case 'V':
			printf("slicectl %s\n", VSLICE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_VSLICE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_VSLICE;
	}
	if (ctl.root[0] != '/') {
		fprintf(stderr, "slicectl: --root: must be an absolute path, got \"%s\"\n",
			ctl.root);
		return EXIT_VSLICE;
	}
	const char *verb = argv[optind];
	/* Cluster mode: the verbs act through the registry (cluster.c). */
	bool cluster = ctl.registry && *ctl.registry;
	/* A node manager's root: its slivers live under the cgroup parent it
	 * recorded (derived from its node name unless given). */
	const char *cgp = getenv("VSLICE_CGROUP_PARENT");
	if (!cluster && (!cgp || !*cgp)) {
		cleanup_free char *recorded = nodemgr_root_cgroup_parent(ctl.root);
		if (recorded)
			setenv("VSLICE_CGROUP_PARENT", recorded, 1);
	}
	ctl_verb_fn fn = cluster ? cluster_verb(verb) : NULL;
	for (size_t i = 0; !fn && i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(verbs[i].name, verb) != 0 || !verb_fn(i))
			continue;
		if (cluster && strcmp(verb, "validate") != 0 && strcmp(verb, "cp") != 0) {
			fprintf(stderr,
				"slicectl: %s: not available in cluster mode (use submit with a "
				"manifest; or unset VSLICE_REGISTRY for local slices)\n",
				verb);
			return EXIT_VSLICE;
		}
		fn = verb_fn(i);
	}
	if (!fn && !cluster && cluster_only_verb(verb)) {
		/* --help needs no registry. */
		if (cluster_verb_help(verb, argc - optind, argv + optind))
			return 0;
		fprintf(stderr,
			"slicectl: %s: needs a registry (--registry URL or VSLICE_REGISTRY)\n",
			verb);
		return EXIT_VSLICE;
	}
	if (fn && !cluster && geteuid() != 0 && strcmp(verb, "validate") != 0 &&
	    !asks_help(argc - optind, argv + optind)) {
		/* Said first, before some file or cgroup refuses us with a
		 * message that blames itself (a cache dir, a state file). */
		fprintf(stderr,
			"slicectl: %s: needs root (local slices are made with namespaces, cgroups "
			"and mounts; run it as root, e.g. sudo slicectl %s ...)\n",
			verb, verb);
		return EXIT_VSLICE;
	}
	if (fn) {
		/* Each verb parses its own options with argv[0] = the verb;
		 * optind = 0 makes getopt start afresh. */
		int vi = optind;
		/* --json is global but also taken after the verb (slicectl show --json X). */
		int end = vi + ctl_split(argc - vi, argv + vi), k = vi;
		for (int j = vi; j < argc; j++) {
			if (j < end && !strcmp(argv[j], "--json"))
				ctl.json = true;
			else
				argv[k++] = argv[j];
		}
		argc = k;
		argv[argc] = NULL;
		optind = 0;
		opterr = 0; /* we print one line ourselves (ctl_usage) */
		verb_argv = argv + vi;
		return fn(&ctl, argc - vi, argv + vi);
	}
	char shown[128];
	fprintf(stderr, "slicectl: unknown verb \"%s\" (see: slicectl --help)\n",
		vs_printable(verb, shown, sizeof(shown)));
	return EXIT_VSLICE;
}

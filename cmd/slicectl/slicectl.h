/*
 * slicectl.h - shared by the verb files of slicectl. Every verb is
 *     int cmd_<verb>(struct ctl *ctl, int argc, char **argv)
 * with argv[0] the verb; it returns the process exit code (0 ok, the
 * workload's code for run/exec, 125 vslice error, 126/127 exec failures).
 */
#ifndef SLICECTL_H
#define SLICECTL_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "vslice/error.h"

#define EXIT_VSLICE 125

struct ctl {
	const char *root;     /* --root / VSLICE_ROOT / /var/lib/vslice */
	const char *registry; /* --registry / VSLICE_REGISTRY (cluster mode) */
	const char *token;
	const char *ca_file; /* --ca / VSLICE_CA: the registry's CA (https://); NULL = system CAs */
	bool json;
	bool quiet;
	int verbose;
};

/* "slicectl: <verb> <obj>: <msg>" on stderr; returns 125. obj may be NULL. */
int ctl_fail(const char *verb, const char *obj, const struct vs_error *err);
/* "slicectl: <verb>: <formatted>" + a --help hint; returns 125. */
int ctl_usage(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True (and help printed to stdout) when argv has -h/--help before any "--". */
bool ctl_want_help(int argc, char **argv, const char *help);
/* Index of the first "--" in argv, or argc. */
int ctl_split(int argc, char **argv);

struct manifest;
/* Load and validate a manifest; on failure print every error ("FILE: .path:
 * msg") and a count (or append them to json_errors) and return 125. */
int ctl_load_manifest(struct ctl *ctl, const char *verb, const char *file, struct manifest **out,
		      json_t *json_errors);

/* info.c: a stats object (slice_stats_json(), local or a node's answer)
 * printed as --json or text; j consumed. Returns the exit code. */
int ctl_print_stats(struct ctl *ctl, json_t *j);

typedef int (*ctl_verb_fn)(struct ctl *ctl, int argc, char **argv);

/* Cluster mode (cluster.c): the verb acting through the registry, or NULL
 * when it has no cluster form (validate is the same in both modes). */
ctl_verb_fn cluster_verb(const char *verb);
/* Verbs that exist only in cluster mode (nodes, node, token, user, renew). */
bool cluster_only_verb(const char *verb);
/* argv (argv[0] the verb) asks for the cluster verb's --help: printed on
 * stdout, true. Needs no registry: main() asks before "needs a registry". */
bool cluster_verb_help(const char *verb, int argc, char **argv);
/* Cluster mode: submit a manifest built here (create/run from options):
 * validate it, POST it, print the slice name; with wait follow it to its
 * end, with rm delete it then. Returns the exit code. */
int cluster_submit_resolved(struct ctl *ctl, const char *verb, const char *slice, json_t *manifest,
			    bool wait, bool rm);
/* The cluster verbs, for slicectl --help. */
void cluster_usage(FILE *f);
/* cluster.c's client for the registry, for the other cluster verb files
 * (on failure one line, 125). */
struct http_client;
int cluster_connect(struct ctl *ctl, const char *verb, struct http_client *c);
/* Migrations (migrate.c): the verbs, and what node drain --migrate does
 * after the drain (returns the exit code). */
extern const char cluster_migrate_help[], cluster_migrations_help[];
int cmd_migrate_cluster(struct ctl *, int, char **);
int cmd_migrations_cluster(struct ctl *, int, char **);
int cluster_drain_migrate(struct ctl *ctl, struct http_client *c, const char *node,
			  unsigned parallel);

int cmd_create(struct ctl *, int, char **);
int cmd_start(struct ctl *, int, char **);
int cmd_run(struct ctl *, int, char **);
int cmd_stop(struct ctl *, int, char **);
int cmd_kill(struct ctl *, int, char **);
int cmd_freeze(struct ctl *, int, char **);
int cmd_thaw(struct ctl *, int, char **);
int cmd_destroy(struct ctl *, int, char **);
int cmd_renew(struct ctl *, int, char **);
int cmd_list(struct ctl *, int, char **);
int cmd_show(struct ctl *, int, char **);
int cmd_logs(struct ctl *, int, char **);
int cmd_stats(struct ctl *, int, char **);
int cmd_exec(struct ctl *, int, char **);
int cmd_shell(struct ctl *, int, char **);
int cmd_image(struct ctl *, int, char **);
/* Experiments (submit.c) and checkpoints (checkpoint.c): weak until built. */
int cmd_validate(struct ctl *, int, char **) __attribute__((weak));
int cmd_submit(struct ctl *, int, char **) __attribute__((weak));
int cmd_status(struct ctl *, int, char **) __attribute__((weak));
int cmd_results(struct ctl *, int, char **) __attribute__((weak));
int cmd_checkpoint(struct ctl *, int, char **) __attribute__((weak));
int cmd_restore(struct ctl *, int, char **) __attribute__((weak));

#endif

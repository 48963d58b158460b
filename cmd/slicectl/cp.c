/*
 * cp.c - slicectl cp SRC DST: files and directory trees between the host
 * and a slice, either way. One side is NAME[@NODE]:/path (the slice's),
 * the other a host path. Locally the copy runs through slice_files.h
 * (lib/node/slice_files.c); in cluster mode it asks the registry for a "cp"
 * ticket and talks to the sliver's node manager (GET|PUT
 * /v1/slivers/NAME/files?path=P, a tar stream), staging the stream in an
 * unnamed temporary file on the host so a cut connection never leaves a
 * half copy on either side.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/http.h"
#include "vslice/nodeapi.h"
#include "vslice/regclient.h"
#include "vslice/slice_files.h"
#include "vslice/units.h"
#include "vslice/util.h"

static const char cp_help[] =
    "usage: slicectl cp [--node N] SRC DST\n\n"
    "Copy a file or a directory tree between the host and a slice. One of SRC\n"
    "and DST is NAME:/path (or NAME@NODE:/path in cluster mode), the other a host\n"
    "path (write ./a:b for a host path with a colon). DST an existing directory:\n"
    "the copy goes into it under SRC's name; else it is created as DST (an\n"
    "existing file is replaced, an existing directory never is).\n"
    "Modes, mtimes and owners are kept (owners as the slice's root sees them:\n"
    "into a slice, host ids above 65535 become its root; out of it, set-uid and\n"
    "set-gid bits are dropped). Symlinks inside a tree are copied as symlinks;\n"
    "fifos, sockets and devices are skipped. A path in the slice is resolved in\n"
    "its root: one that leaves it (\"..\" or an absolute symlink at any\n"
    "component) is refused. Works on running and stopped slices. Nothing is\n"
    "left half-written: the copy is renamed into place once complete.\n"
    "  --node N    cluster mode: the sliver on node N (when the slice has several;\n"
    "              NAME@N:/path says the same)\n";

/* A slice side "NAME[@NODE]:PATH" (NAME a valid slice name). */
struct cp_side {
	char name[64];
	char node[256];
	const char *path;
	bool slice;
};

static void parse_side(const char *arg, struct cp_side *s)
{
	*s = (struct cp_side){.path = arg};
	const char *colon = strchr(arg, ':');
	if (!colon || colon == arg)
		return;
	const char *at = memchr(arg, '@', (size_t)(colon - arg));
	size_t nlen = (size_t)((at ? at : colon) - arg);
	if (nlen >= sizeof(s->name) || (at && (size_t)(colon - at - 1) >= sizeof(s->node)))
		return;
	memcpy(s->name, arg, nlen);
	s->name[nlen] = '\0';
	if (!vs_name_valid(s->name))
		return;
	if (at) {
		memcpy(s->node, at + 1, (size_t)(colon - at - 1));
		s->node[colon - at - 1] = '\0';
	}
	s->slice = true;
	s->path = colon + 1;
}

/* An unnamed file for the stream (never visible, gone when closed). */
static int stream_tmpfile(struct vs_error *err)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "a temporary file in %s", dir);
	return fd;
}

/* Cluster mode: a ticket, then the node. */
static int cp_remote(struct ctl *ctl, const struct cp_side *sl, const char *host, bool in,
		     const char *node_opt)
{
	struct vs_error err;
	const char *node = sl->node[0] ? sl->node : node_opt;
	cleanup_http struct http_client reg = {0};
	int rc = cluster_connect(ctl, "cp", &reg);
	if (rc)
		return rc;
	json_t *resp = NULL;
	long status = 0;
	if (regclient_ticket_create(&reg, sl->name, node, "cp", &resp, &status, &err) < 0) {
		if (status == 404)
			vs_error_set(&err, ENOENT, "no such slice (see: slicectl list)");
		return ctl_fail("cp", sl->name, &err);
	}
	const char *ticket = json_string_value(json_object_get(resp, "ticket"));
	const char *url = json_string_value(json_object_get(resp, "url"));
	const char *tnode = json_string_value(json_object_get(resp, "node"));
	if (!ticket || !url) {
		json_decref(resp);
		vs_error_set(&err, EPROTO, "the registry's ticket answer has no ticket or url");
		return ctl_fail("cp", sl->name, &err);
	}
	char who[128];
	snprintf(who, sizeof(who), "%s@%s", sl->name, tnode ? tnode : "?");
	cleanup_http struct http_client nc = {0};
	int r = http_client_init_peer(&nc, url, ticket, ctl->ca_file, "node", &err);
	json_decref(resp);
	if (r < 0)
		return ctl_fail("cp", who, &err);
	cleanup_free char *esc = http_escape(sl->path, 0);
	cleanup_free char *query = vs_xasprintf("?path=%s", esc);
	cleanup_free char *path = nodeapi_sliver_path(sl->name, "files", query);
	cleanup_close int tmp = stream_tmpfile(&err);
	if (tmp < 0)
		return ctl_fail("cp", host, &err);
	if (in) {
		if (slice_files_pack(host, tmp, &err) < 0)
			return ctl_fail("cp", host, &err);
		if (lseek(tmp, 0, SEEK_SET) < 0) {
			vs_error_sys(&err, errno, "rewind the stream");
			return ctl_fail("cp", host, &err);
		}
		static const char *const hdrs[] = {"Content-Type: application/x-tar", NULL};
		json_t *ans = NULL;
		r = http_put_stream(&nc, path, tmp, hdrs, NULL, &status, &ans, &err);
		json_decref(ans);
		if (r < 0)
			return ctl_fail("cp", who, &err);
		return 0;
	}
	if (http_get_fd(&nc, path, tmp, NULL, NULL, 0, &status, &err) < 0)
		return ctl_fail("cp", who, &err);
	if (lseek(tmp, 0, SEEK_SET) < 0) {
		vs_error_sys(&err, errno, "rewind the stream");
		return ctl_fail("cp", host, &err);
	}
	if (slice_files_unpack(host, tmp, NULL, NULL, &err) < 0)
		return ctl_fail("cp", host, &err);
	return 0;
}

int cmd_cp(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, cp_help))
		return 0;
	const char *node = NULL;
	const char *args[2];
	int n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--node")) {
			if (++i >= argc)
				return ctl_usage("cp", "--node needs a node name");
			node = argv[i];
		} else if (!strncmp(argv[i], "--node=", 7)) {
			node = argv[i] + 7;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return ctl_usage("cp", "unknown option %s", argv[i]);
		} else if (n < 2) {
			args[n++] = argv[i];
		} else {
			return ctl_usage("cp", "SRC and DST only");
		}
	}
	if (n < 2)
		return ctl_usage("cp", "needs SRC and DST");
	struct cp_side src, dst;
	parse_side(args[0], &src);
	parse_side(args[1], &dst);
	if (src.slice == dst.slice)
		return ctl_usage("cp", src.slice ? "SRC and DST are both in a slice (one must be a "
						   "host path)"
						 : "neither SRC nor DST is NAME:/path in a slice");
	const struct cp_side *sl = src.slice ? &src : &dst;
	const char *host = src.slice ? dst.path : src.path;
	if (!*sl->path || !*host)
		return ctl_usage("cp", "an empty path");
	/* A reader that died must fail our write (EPIPE), not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (ctl->registry)
		return cp_remote(ctl, sl, host, dst.slice, node);
	if (node || sl->node[0])
		return ctl_usage("cp", "--node and NAME@NODE are for cluster mode");
	struct vs_error err;
	int r = dst.slice ? slice_files_copy_in(ctl->root, sl->name, host, sl->path, &err)
			  : slice_files_copy_out(ctl->root, sl->name, sl->path, host, &err);
	if (r < 0)
		return ctl_fail("cp", sl->name, &err);
	return 0;
}

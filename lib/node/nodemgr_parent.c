/*
 * nodemgr_parent.c - which cgroup parent a node root's slivers live under
 * (include/vslice/nodemgr.h): the one a node manager recorded in
 * <root>/nodemgr/cgroup-parent, or the default it would pick.
 *
 * Its own file because slicectl asks it on every command (so that local
 * commands on a node's root find that node's slivers): linked from
 * nodemgr.c, the lookup drew the whole node manager, libmicrohttpd and
 * GnuTLS into slicectl, and every `slicectl run` paid their loading and
 * constructors (~1 ms of CPU and more, docs/benchmarks.md §7).
 */
#include <ctype.h>
#include <dirent.h>
#include <string.h>

#include "nodemgr_int.h"
#include "vslice/util.h"

static bool cgroup_parent_valid(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > 255 || p[0] == '/' || p[n - 1] == '/')
		return false;
	for (const char *c = p; *c; c++) {
		if ((c == p || c[-1] == '/') && (*c == '.' || *c == '/'))
			return false;
		if (!isalnum((unsigned char)*c) && !strchr("_.@-/", *c))
			return false;
	}
	return true;
}

char *nodemgr_root_cgroup_parent(const char *root)
{
	cleanup_free char *path = vs_xasprintf("%s/" CGROUP_PARENT_FILE, root);
	cleanup_free char *text = NULL;
	struct vs_error ignore;
	if (vs_read_file(path, 4096, &text, NULL, &ignore) < 0)
		return NULL;
	text[strcspn(text, "\n")] = '\0';
	return cgroup_parent_valid(text) ? steal_pointer(&text) : NULL;
}

/* Does root hold a slice (an entry in slices/ other than . and ..)? */
static bool root_has_slices(const char *root)
{
	cleanup_free char *d = vs_xasprintf("%s/slices", root);
	DIR *dir = opendir(d);
	if (!dir)
		return false;
	bool any = false;
	for (struct dirent *e; !any && (e = readdir(dir));)
		any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dir);
	return any;
}

int nodemgr_cgroup_parent(const char *root, const char *name, const char *given, char **out,
			  struct vs_error *err)
{
	*out = NULL;
	if (given && *given) {
		/* Spelled as the lock and cgroup_open take it: no outer slashes. */
		const char *g = given;
		while (*g == '/')
			g++;
		cleanup_free char *parent = vs_xstrdup(g);
		for (size_t n = strlen(parent); n > 0 && parent[n - 1] == '/'; n--)
			parent[n - 1] = '\0';
		if (!cgroup_parent_valid(parent))
			return vs_error_set(
			    err, EINVAL,
			    "cgroup parent \"%s\": use components of letters, digits, "
			    "'-', '_', '.', '@' joined by '/' (not starting with '.')",
			    given);
		*out = steal_pointer(&parent);
		return 0;
	}
	if ((*out = nodemgr_root_cgroup_parent(root)))
		return 0;
	*out = root_has_slices(root) ? vs_xstrdup("vslice") : vs_xasprintf("vslice-%s", name);
	return 0;
}

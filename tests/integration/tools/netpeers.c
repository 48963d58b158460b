/*
 * netpeers: the overlay's peer list of one node, set through the library
 * call the node manager will make (netcfg_overlay_set_peers), for
 * tests/integration/test_overlay.sh and tests/bench/net.sh. Runs in the
 * node's network namespace with the node's VSLICE_ROOT and overlay
 * environment, like slicectl.
 *   netpeers set [IP@NODE ...]   replace the list (none: clear it)
 *   netpeers show                print it, one IP@NODE a line
 * Exit 0 on success; an error is printed as the library words it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vslice/netcfg.h"

int main(int argc, char **argv)
{
	const char *root = getenv("VSLICE_ROOT");
	struct vs_error err;
	if (!root || !*root)
		root = "/var/lib/vslice";
	if (argc >= 2 && !strcmp(argv[1], "show")) {
		struct netcfg_peer *p;
		size_t n;
		if (netcfg_overlay_get_peers(root, &p, &n, &err) < 0) {
			fprintf(stderr, "netpeers: %s\n", err.msg);
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			printf("%s@%s\n", p[i].ip, p[i].node);
		free(p);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "set")) {
		fprintf(stderr, "usage: netpeers set [IP@NODE ...] | netpeers show\n");
		return 2;
	}
	size_t n = (size_t)argc - 2;
	struct netcfg_peer *p = calloc(n + 1, sizeof(*p));
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[i + 2], *at = strchr(a, '@');
		if (!at || (size_t)(at - a) >= sizeof(p[i].ip) ||
		    strlen(at + 1) >= sizeof(p[i].node)) {
			fprintf(stderr, "netpeers: \"%s\": expected IP@NODE\n", a);
			return 2;
		}
		snprintf(p[i].ip, sizeof(p[i].ip), "%.*s", (int)(at - a), a);
		snprintf(p[i].node, sizeof(p[i].node), "%s", at + 1);
	}
	int r = netcfg_overlay_set_peers(root, p, n, &err);
	free(p);
	if (r < 0) {
		fprintf(stderr, "netpeers: %s\n", err.msg);
		return 1;
	}
	return 0;
}

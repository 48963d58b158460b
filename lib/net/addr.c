/*
 * addr.c - parse the daemons' --listen addresses (netaddr.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "vslice/netaddr.h"
#include "vslice/util.h"

int vs_parse_listen(const char *listen, struct sockaddr_storage *ss, struct vs_error *err)
{
	cleanup_free char *host = vs_xstrdup(listen);
	char *colon = strrchr(host, ':');
	if (!colon)
		return vs_error_set(err, EINVAL, "--listen %s: expected ADDR:PORT", listen);
	*colon = '\0';
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535)
		return vs_error_set(err, EINVAL, "--listen %s: bad port", listen);
	char *h = host;
	size_t hl = strlen(h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (*h == '\0' || strcmp(h, "*") == 0) {
		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
		in4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
	} else {
		return vs_error_set(err, EINVAL, "--listen %s: %s is not an IP address", listen, h);
	}
	return 0;
}

/*
 * netaddr.h - listening addresses as the daemons take them on the command
 * line (vslice-registry --listen, vslice-nodemgr --listen).
 */
#ifndef VSLICE_NETADDR_H
#define VSLICE_NETADDR_H

#include <sys/socket.h>

#include "vslice/error.h"

/* "ADDR:PORT", "[V6ADDR]:PORT", "*:PORT" or ":PORT" (any IPv4 address);
 * port 0 lets the kernel pick. Errors name "--listen ADDR". */
int vs_parse_listen(const char *listen, struct sockaddr_storage *ss, struct vs_error *err);

#endif

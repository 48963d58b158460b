/* refuse_tcp: TCP sockets are refused (the slice's address does not move
 * with it yet); the process runs on untouched (driver uses -r). */
#include <netinet/in.h>
#include <sys/socket.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int s = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(s >= 0, "socket");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s, 4) == 0, "listen");
	test_daemon();
	test_waitsig();
	pass();
}

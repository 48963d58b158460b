/*
 * tcprelay.c - run a command with one end of a TCP connection as its stdin
 * or stdout, for tests/bench/migrate.sh: both pipelines it compares
 * (`tar c | tar x` and the migration stream) cross the veth the same way,
 * with no relay process copying bytes in between.
 *
 *   tcprelay listen ADDR PORT -- CMD ARG...    accept one connection: CMD's stdin
 *   tcprelay connect ADDR PORT -- CMD ARG...   connect (retrying 10 s): CMD's stdout
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(125);
}

int main(int argc, char **argv)
{
	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr, "usage: tcprelay listen|connect ADDR PORT -- CMD ARG...\n");
		return 125;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
	if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
		die("address");
	int fd;
	if (!strcmp(argv[1], "listen")) {
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		if (s < 0)
			die("socket");
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0)
			die("listen");
		fd = accept(s, NULL, NULL);
		if (fd < 0)
			die("accept");
		close(s);
		if (dup2(fd, 0) < 0)
			die("dup2");
	} else {
		/* The listener may not be up yet: a new socket per attempt. */
		for (int i = 0;; i++) {
			fd = socket(AF_INET, SOCK_STREAM, 0);
			if (fd < 0)
				die("socket");
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
				break;
			if ((errno != ECONNREFUSED && errno != ENETUNREACH) || i == 1000)
				die("connect");
			close(fd);
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (dup2(fd, 1) < 0)
			die("dup2");
	}
	close(fd);
	execvp(argv[5], argv + 5);
	die(argv[5]);
}

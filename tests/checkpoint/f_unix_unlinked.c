/* f_unix_unlinked: unix sockets bound to a path that was unlinked since (a
 * datagram socket, a listener) keep their name, and the path stays absent. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	struct sockaddr_un d = { .sun_family = AF_UNIX }, l = { .sun_family = AF_UNIX };
	test_tmp_name(d.sun_path, sizeof(d.sun_path), "ckpt-ugone-d");
	test_tmp_name(l.sun_path, sizeof(l.sun_path), "ckpt-ugone-l");
	unlink(d.sun_path);
	unlink(l.sun_path);
	int sd = socket(AF_UNIX, SOCK_DGRAM, 0), sl = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(sd, (void *)&d, sizeof(d)) == 0, "bind dgram");
	CHECK(bind(sl, (void *)&l, sizeof(l)) == 0 && listen(sl, 4) == 0, "listen");
	CHECK(unlink(d.sun_path) == 0 && unlink(l.sun_path) == 0, "unlink");
	/* and a new, unrelated file now sits where the listener's socket was */
	FILE *f = fopen(l.sun_path, "w");
	CHECK(f && fputs("x", f) >= 0 && fclose(f) == 0, "replacement file");
	test_daemon();
	test_waitsig();
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	CHECK(getsockname(sd, (void *)&got, &gl) == 0 && !strcmp(got.sun_path, d.sun_path), "dgram name");
	gl = sizeof(got);
	CHECK(getsockname(sl, (void *)&got, &gl) == 0 && !strcmp(got.sun_path, l.sun_path), "listener name");
	struct stat st;
	CHECK(lstat(d.sun_path, &st) < 0 && errno == ENOENT, "unlinked socket path came back");
	CHECK(lstat(l.sun_path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 1, "replacement file changed");
	int one = 1;
	CHECK(setsockopt(sl, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0, "listener alive");
	unlink(l.sun_path);
	pass();
}

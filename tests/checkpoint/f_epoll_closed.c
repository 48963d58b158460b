/* f_epoll_closed: an epoll set keeps a target whose fd was closed (the file
 * lives on through a dup) and one file registered through two dup'ed fds. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int ep = epoll_create1(0);
	int e1 = eventfd(1, 0), e2 = eventfd(1, 0);
	CHECK(ep >= 0 && e1 >= 0 && e2 >= 0, "create");
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1111 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e1, &ev) == 0, "add e1");
	int keep = dup(e1);
	close(e1); /* registered under a number that is now closed */
	int d2 = dup(e2);
	ev.data.u64 = 0x2222;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e2, &ev) == 0, "add e2");
	ev.data.u64 = 0x3333;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, d2, &ev) == 0, "add e2 through its dup");
	test_daemon();
	test_waitsig();
	struct epoll_event out[8];
	int n = epoll_wait(ep, out, 8, 1000);
	CHECK(n == 3, "%d events, want 3", n);
	unsigned seen = 0;
	for (int i = 0; i < n; i++)
		seen |= out[i].data.u64 == 0x1111 ? 1 : out[i].data.u64 == 0x2222 ? 2 : out[i].data.u64 == 0x3333 ? 4 : 8;
	CHECK(seen == 7, "events seen %#x", seen);
	uint64_t v;
	CHECK(read(keep, &v, 8) == 8 && v == 1, "read e1");
	CHECK(read(d2, &v, 8) == 8 && v == 1, "read e2");
	CHECK(epoll_wait(ep, out, 8, 0) == 0, "events after draining");
	/* the registration under the closed number is still there: a new fd
	 * with that number on the same file cannot be added again */
	CHECK(dup2(keep, e1) == e1, "dup2");
	ev.data.u64 = 0x4444;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e1, &ev) < 0 && errno == EEXIST, "closed fd registration lost");
	pass();
}

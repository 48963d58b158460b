/* epoll: an epoll set with a pipe and an eventfd keeps its registrations,
 * events masks and data. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int ep = epoll_create1(0), p[2], e = eventfd(0, 0);
	CHECK(pipe(p) == 0, "pipe");
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1111 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add pipe");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0x2222;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) == 0, "add eventfd");
	test_daemon();
	test_waitsig();
	CHECK(epoll_wait(ep, &ev, 1, 0) == 0, "spurious event");
	CHECK(write(p[1], "x", 1) == 1, "write");
	CHECK(epoll_wait(ep, &ev, 1, 1000) == 1 && ev.data.u64 == 0x1111, "pipe event");
	char c;
	CHECK(read(p[0], &c, 1) == 1, "read");
	uint64_t v = 1;
	CHECK(write(e, &v, 8) == 8, "eventfd write");
	CHECK(epoll_wait(ep, &ev, 1, 1000) == 1 && ev.data.u64 == 0x2222 && (ev.events & EPOLLIN), "eventfd event");
	CHECK(epoll_wait(ep, &ev, 1, 0) == 0, "EPOLLET lost");
	pass();
}

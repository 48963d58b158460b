/* sighandlers: handlers with flags, the blocked mask, pending signals
 * (process-wide and with siginfo data), and a sigaltstack survive. */
#include "zdtm.h"

static volatile int got_usr1, got_rt, on_alt;
static volatile int rt_value;
static char altstack[65536];

static void h_usr1(int s)
{
	got_usr1++;
	int x;
	on_alt = (char *)&x >= altstack && (char *)&x < altstack + sizeof(altstack);
}

static void h_rt(int s, siginfo_t *si, void *uc)
{
	got_rt++;
	rt_value = si->si_value.sival_int;
}

int main(void)
{
	test_init();
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");
	struct sigaction sa = { .sa_handler = h_usr1, .sa_flags = SA_ONSTACK | SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	struct sigaction sr = { .sa_sigaction = h_rt, .sa_flags = SA_SIGINFO };
	sigaction(SIGRTMIN + 2, &sr, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGRTMIN + 2);
	sigaddset(&m, SIGHUP);
	sigprocmask(SIG_BLOCK, &m, NULL);
	kill(getpid(), SIGUSR1);
	union sigval v = { .sival_int = 4242 };
	sigqueue(getpid(), SIGRTMIN + 2, v);
	test_daemon();
	test_waitsig();
	sigset_t pend;
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGRTMIN + 2), "pending signals lost");
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	CHECK(sigismember(&cur, SIGHUP), "blocked mask lost");
	struct sigaction q;
	sigaction(SIGPIPE, NULL, &q);
	CHECK(q.sa_handler == SIG_IGN, "SIG_IGN lost");
	sigaction(SIGUSR1, NULL, &q);
	CHECK(q.sa_handler == h_usr1 && (q.sa_flags & SA_ONSTACK), "handler lost");
	sigprocmask(SIG_UNBLOCK, &m, NULL);
	CHECK(got_usr1 == 1 && on_alt, "SIGUSR1 delivered %d, on altstack %d", got_usr1, on_alt);
	CHECK(got_rt == 1 && rt_value == 4242, "rt signal %d value %d", got_rt, rt_value);
	pass();
}

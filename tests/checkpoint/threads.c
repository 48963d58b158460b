/* threads: several threads with TLS, a mutex, and blocked signals keep
 * counting after restore; the main thread waits for SIGTERM. */
#include <pthread.h>
#include <stdatomic.h>
#include "zdtm.h"

#define N 4
static __thread unsigned long tls_count;
static __thread int tls_id;
static atomic_ulong counts[N];
static atomic_int stop;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long shared_total;

static void *worker(void *arg)
{
	tls_id = (int)(long)arg;
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1 + (tls_id & 1));
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	while (!atomic_load(&stop)) {
		tls_count++;
		atomic_store(&counts[tls_id], tls_count);
		pthread_mutex_lock(&mu);
		shared_total++;
		pthread_mutex_unlock(&mu);
		if ((tls_count & 1023) == 0)
			sched_yield();
	}
	sigset_t cur;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	if (!sigismember(&cur, SIGUSR1 + (tls_id & 1)))
		return (void *)1;
	return tls_count == atomic_load(&counts[tls_id]) ? NULL : (void *)2;
}

int main(void)
{
	test_init();
	pthread_t t[N];
	for (long i = 0; i < N; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	test_daemon();
	unsigned long before[N];
	struct timespec ts = { 0, 100000000 };
	nanosleep(&ts, NULL);
	for (int i = 0; i < N; i++)
		before[i] = atomic_load(&counts[i]);
	test_waitsig();
	for (int i = 0; i < N; i++)
		CHECK(atomic_load(&counts[i]) > before[i], "thread %d stopped counting", i);
	atomic_store(&stop, 1);
	for (int i = 0; i < N; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		CHECK(rv == NULL, "thread %d verify failed (%ld)", i, (long)rv);
	}
	pass();
}

/* futex_robust: a thread waiting on a condition variable wakes after
 * restore; a robust mutex held by a thread that dies is reported
 * EOWNERDEAD (robust list restored). */
#include <pthread.h>
#include "zdtm.h"

static pthread_mutex_t rm;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;

static void *holder(void *a)
{
	pthread_mutex_lock(&rm);
	pthread_mutex_lock(&mu);
	while (!go)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL; /* exits holding rm */
}

int main(void)
{
	test_init();
	pthread_mutexattr_t at;
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&rm, &at);
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	usleep(50000);
	test_daemon();
	test_waitsig();
	pthread_mutex_lock(&mu);
	go = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(t, NULL);
	int r = pthread_mutex_lock(&rm);
	CHECK(r == EOWNERDEAD, "robust mutex: %d (%s)", r, strerror(r));
	pass();
}

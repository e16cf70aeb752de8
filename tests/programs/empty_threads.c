/* Baseline for the 4-thread programs: the same thread creation, no counted
 * allocation (glibc allocates each new thread's DTV on the heap). */
#include "tally.h"
#include <pthread.h>

#define NTHREADS 4
static pthread_barrier_t barrier;

static void *worker(void *arg)
{
    pthread_barrier_wait(&barrier);
    return arg;
}

int main(void)
{
    pthread_t th[NTHREADS];
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&barrier);
    tally_print("empty_threads");
    return 0;
}

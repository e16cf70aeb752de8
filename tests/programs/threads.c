/* 4 threads allocate blocks, hand them to the next thread, which frees them
 * (all but a known few, which leak). Barriers separate the phases so that the
 * peak is the same in every interleaving: it is reached when every block of
 * phase 1 is allocated. */
#include "tally.h"
#include <pthread.h>

#define NTHREADS 4
#define PER_THREAD 1000

static void *slots[NTHREADS][PER_THREAD];
static pthread_barrier_t barrier;

static size_t block_size(int t, int j) { return (size_t)(t + 1) * 16 + (size_t)(j % 7) * 8; }

static void *worker(void *arg)
{
    int t = (int)(long)arg;
    pthread_barrier_wait(&barrier); /* every thread exists before any counted allocation */

    /* phase 1: allocate (live only grows) */
    for (int j = 0; j < PER_THREAD; j++)
        slots[t][j] = (j % 2) ? t_malloc(block_size(t, j)) : t_calloc(block_size(t, j), 1);
    pthread_barrier_wait(&barrier);

    /* phase 2: free the next thread's blocks, except every 100th (leaked) */
    int o = (t + 1) % NTHREADS;
    for (int j = 0; j < PER_THREAD; j++)
        if (j % 100 != 0)
            t_free(slots[o][j], block_size(o, j));
    pthread_barrier_wait(&barrier);

    /* phase 3: short-lived pairs, far below the peak */
    for (int j = 0; j < 1000; j++) {
        size_t n = 64 + (size_t)t;
        void *p = t_malloc(n);
        t_free(p, n);
    }
    return NULL;
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
    tally_print("threads");
    return 0;
}

/* Stress: 4 threads x 2,500,000 malloc/free pairs (10 million in total),
 * sizes 16..256, with heavy address reuse (a ring of 64 slots per thread);
 * plus a deliberate leak: every thread leaks exactly 1000 blocks of 48 bytes.
 * Counted per thread, summed at the end (the peak is not deterministic here
 * and is printed as -1). */
#include "tally.h"
#include <pthread.h>
#include <stdint.h>

#define NTHREADS 4
#define PAIRS_PER_THREAD 2500000L
#define RING 64
#define LEAK_N 1000
#define LEAK_SIZE 48

static pthread_barrier_t barrier;

struct local { long blocks_allocated, blocks_freed, bytes_allocated, live_bytes, live_blocks; };

static void *worker(void *arg)
{
    long t = (long)arg;
    struct local c = {0};
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
    void *ring[RING] = {0};
    size_t sizes[RING] = {0};
    pthread_barrier_wait(&barrier);

    for (long i = 0; i < PAIRS_PER_THREAD; i++) {
        int k = (int)(i % RING);
        if (ring[k]) {
            free(tally_escape(ring[k]));
            c.blocks_freed++; c.live_blocks--; c.live_bytes -= (long)sizes[k];
        }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t n = 16 + (size_t)(x % 241);
        void *p = tally_escape(malloc(n));
        if (!p) abort();
        ((char *)p)[0] = (char)i;
        ring[k] = p; sizes[k] = n;
        c.blocks_allocated++; c.bytes_allocated += (long)n; c.live_blocks++; c.live_bytes += (long)n;
        if (i % 2500 == 0 && i / 2500 < LEAK_N) { /* spread the leak over the run */
            void *l = tally_escape(malloc(LEAK_SIZE));
            if (!l) abort();
            c.blocks_allocated++; c.bytes_allocated += LEAK_SIZE; c.live_blocks++; c.live_bytes += LEAK_SIZE;
        }
    }
    for (int k = 0; k < RING; k++) {
        if (ring[k]) {
            free(tally_escape(ring[k]));
            c.blocks_freed++; c.live_blocks--; c.live_bytes -= (long)sizes[k];
        }
    }
    TALLY_ADD(blocks_allocated, c.blocks_allocated);
    TALLY_ADD(blocks_freed, c.blocks_freed);
    TALLY_ADD(bytes_allocated, c.bytes_allocated);
    TALLY_ADD(live_bytes, c.live_bytes);
    TALLY_ADD(live_blocks, c.live_blocks);
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
    tally_g.peak_bytes = -1;
    tally_print("stress");
    return 0;
}

/* Runs ~3 s (argv[1] ms, default 3000). leak_thread: one 4 KiB block every 10 ms,
 * never freed until the end (409,600 B/s). churn_thread: a pool of 1000 x 64 B
 * blocks, 1000 replaced every 10 ms (100,000 allocations/s at a flat level). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STEP_NS 10000000L
static long run_ms = 3000;

static void tick(struct timespec *deadline) {
    deadline->tv_nsec += STEP_NS;
    while (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_nsec -= 1000000000L;
        deadline->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL) != 0) {}
}

__attribute__((noinline)) static void *leak_step(void) { return malloc(4096); }

__attribute__((noinline)) static void *churn_step(void) { return malloc(64); }

static void *leak_thread(void *arg) {
    (void)arg;
    long steps = run_ms / 10;
    void **kept = calloc((size_t)steps, sizeof(void *));
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    for (long i = 0; i < steps; i++) {
        kept[i] = leak_step();
        tick(&d);
    }
    for (long i = 0; i < steps; i++) free(kept[i]);
    free(kept);
    return NULL;
}

static void *churn_thread(void *arg) {
    (void)arg;
    static void *pool[1000];
    for (int i = 0; i < 1000; i++) pool[i] = churn_step();
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    for (long s = 0; s < run_ms / 10; s++) {
        for (int i = 0; i < 1000; i++) {
            free(pool[i]);
            pool[i] = churn_step();
        }
        tick(&d);
    }
    for (int i = 0; i < 1000; i++) free(pool[i]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) run_ms = atol(argv[1]);
    pthread_t a, b;
    pthread_create(&a, NULL, leak_thread, NULL);
    pthread_create(&b, NULL, churn_thread, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}

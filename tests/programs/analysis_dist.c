/* Fixed sizes and lifetimes, for exact percentiles.
 * fixed_sizes: 50 x 64 B, 40 x 1024 B, 10 x 4096 B, each freed at once (0 ms).
 * held: 20 x 256 B; 10 freed after ~50 ms, 10 still live at exit (censored).
 * Prints "held_lifetime_ns LO HI": bounds of the freed held blocks' lifetimes. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noinline)) static void *fixed_alloc(size_t n) { return malloc(n); }

__attribute__((noinline)) static void *held_alloc(size_t n) { return malloc(n); }

static void fixed_sizes(void) {
    size_t sizes[3] = {64, 1024, 4096};
    int counts[3] = {50, 40, 10};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < counts[k]; i++) {
            void *p = fixed_alloc(sizes[k]);
            free(p);
        }
}

int main(void) {
    fixed_sizes();
    void *held[20];
    long long before = now_ns();
    for (int i = 0; i < 20; i++) held[i] = held_alloc(256);
    long long after = now_ns();
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    long long free_before = now_ns();
    for (int i = 0; i < 10; i++) free(held[i]);
    long long free_after = now_ns();
    fprintf(stderr, "held_lifetime_ns %lld %lld\n", free_before - after, free_after - before);
    return 0; /* held[10..20] stay live */
}

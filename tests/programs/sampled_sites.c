/* Known totals for the sampling test: three sites of very different sizes.
 *   many_small:  20,000 x 64 B, all freed        (1,280,000 B allocated)
 *   some_medium:  3,000 x 500 B, all kept         (1,500,000 B allocated, live)
 *   few_large:       50 x 100 KiB, all freed      (5,120,000 B allocated) */
#include <stdlib.h>

static void *sink[3000];

__attribute__((noinline)) static void many_small(void) {
    for (int i = 0; i < 20000; i++) {
        void *p = malloc(64);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

__attribute__((noinline)) static void some_medium(void) {
    for (int i = 0; i < 3000; i++)
        sink[i] = malloc(500);
}

__attribute__((noinline)) static void few_large(void) {
    for (int i = 0; i < 50; i++) {
        void *p = malloc(100 * 1024);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

int main(void) {
    many_small();
    some_medium();
    few_large();
    return sink[0] == NULL;
}

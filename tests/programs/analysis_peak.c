/* The process peak (50 MiB from build_big_buffer) happens mid-run and is
 * freed before exit; keep_small leaves 1 MiB live at exit. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static char *build_big_buffer(void) {
    char *p = malloc(50 << 20);
    memset(p, 1, 50 << 20);
    return p;
}

__attribute__((noinline)) static void *keep_small(void) { return malloc(1024); }

int main(void) {
    void *before[512];
    for (int i = 0; i < 512; i++) before[i] = keep_small();
    char *big = build_big_buffer();
    volatile char sink = big[12345];
    (void)sink;
    free(big);
    void *after[512];
    for (int i = 0; i < 512; i++) after[i] = keep_small();
    (void)before;
    (void)after;
    return 0; /* 1024 x 1 KiB still live */
}

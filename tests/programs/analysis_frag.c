/* 1000 requests of 1 KiB (rounded up by glibc) and 1000 of 24 B, all live at
 * exit. Prints "frag KIB SMALL": the sums of malloc_usable_size - requested. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static void *alloc_kib(void) { return malloc(1024); }

__attribute__((noinline)) static void *alloc_small(void) { return malloc(24); }

int main(void) {
    static void *kib[1000], *small[1000];
    unsigned long long waste_kib = 0, waste_small = 0;
    for (int i = 0; i < 1000; i++) {
        kib[i] = alloc_kib();
        small[i] = alloc_small();
        waste_kib += malloc_usable_size(kib[i]) - 1024;
        waste_small += malloc_usable_size(small[i]) - 24;
    }
    fprintf(stderr, "frag %llu %llu\n", waste_kib, waste_small);
    return 0;
}

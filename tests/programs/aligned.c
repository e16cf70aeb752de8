/* The aligned allocation functions, some freed, some leaked. */
#include "tally.h"
#include <stdint.h>

static void check(void *p, size_t align)
{
    if ((uintptr_t)p % align != 0) {
        fprintf(stderr, "misaligned %p for %zu\n", p, align);
        abort();
    }
}

int main(void)
{
    void *keep[8];
    long page = sysconf(_SC_PAGESIZE);

    keep[0] = t_posix_memalign(64, 100);    check(keep[0], 64);
    keep[1] = t_aligned_alloc(4096, 8192);  check(keep[1], 4096);
    keep[2] = t_memalign(32, 50);           check(keep[2], 32);
    keep[3] = t_valloc(1000);               check(keep[3], (size_t)page);
    keep[4] = t_posix_memalign(256, 3000);  check(keep[4], 256);

    for (int i = 0; i < 50; i++) {
        size_t n = (size_t)(i * 37 + 8);
        void *a = t_posix_memalign(128, n);    check(a, 128);
        void *b = t_aligned_alloc(64, 64 * (size_t)(i + 1)); check(b, 64);
        void *c = t_memalign(16, n);           check(c, 16);
        void *d = t_valloc(n);                 check(d, (size_t)page);
        t_free(d, n);
        t_free(b, 64 * (size_t)(i + 1));
        t_free(a, n);
        t_free(c, n);
    }
    /* free two of the kept ones; the rest leak */
    t_free(keep[1], 8192);
    t_free(keep[4], 3000);
    keep[5] = t_aligned_alloc(16, 48);      check(keep[5], 16);
    tally_print("aligned");
    return 0;
}

/* Stack-capture microbenchmark: ns per malloc+free pair at a given call depth.
 *
 * usage: unwind DEPTH [PAIRS]
 *   Recurses DEPTH noinline functions deep, then times PAIRS malloc+free
 *   pairs (default 2,000,000) from the bottom frame and prints
 *   "depth=D pairs=N ns_per_pair=X". The best of 5 rounds is reported.
 *
 * Build it twice, to measure CFI unwinding and frame-pointer code:
 *   cc -O2 -fomit-frame-pointer    -o /tmp/unwind-nofp bench/unwind.c
 *   cc -O2 -fno-omit-frame-pointer -o /tmp/unwind-fp   bench/unwind.c
 * and run it plain and under the shim (no collector needed: the events go to
 * a trace file; MEMSHIM_STACK_DEPTH=128 so that deep stacks are not cut):
 *   /tmp/unwind-nofp 30
 *   MEMSHIM_STACK_DEPTH=128 MEMSHIM_SOCKET=/nonexistent \
 *   MEMSHIM_OUTPUT=/tmp/unwind.%p.mst LD_PRELOAD=target/release/libmemshim.so \
 *       /tmp/unwind-nofp 30
 * bench/unwind.sh does all of this for depths 10, 30 and 60. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long pairs = 2000000;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* The timed loop, at the bottom of the recursion. */
__attribute__((noinline)) static double leaf(void) {
    double best = 1e300;
    for (int round = 0; round < 5; round++) {
        double t0 = now_ns();
        for (long i = 0; i < pairs; i++) {
            void *p = malloc(32);
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
        }
        double ns = (now_ns() - t0) / pairs;
        if (ns < best)
            best = ns;
    }
    return best;
}

/* One frame per level; the addition after the call keeps it from becoming a
 * tail call (or a loop), and the asm barrier keeps the frame's shape honest. */
__attribute__((noinline)) static double descend(int n) {
    if (n <= 1)
        return leaf();
    double r = descend(n - 1);
    __asm__ volatile("" : : : "memory");
    return r + 0.0 * n;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DEPTH [PAIRS]\n", argv[0]);
        return 2;
    }
    int depth = atoi(argv[1]);
    if (argc > 2)
        pairs = atol(argv[2]);
    /* main + descend * (depth - 1) + leaf: `depth` frames of this program. */
    double ns = descend(depth - 1);
    printf("depth=%d pairs=%ld ns_per_pair=%.1f\n", depth, pairs, ns);
    return 0;
}

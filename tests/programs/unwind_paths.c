/* Many call paths to malloc, in a pseudo-random but fixed order, for the test
 * that a memoized unwind (reusing the previous stack's outer frames) gives
 * exactly the stacks of a fresh one. Paths of equal length through the same
 * functions in another order reach malloc at the same stack pointer with
 * different callers above: only the memo's check of the stack words can
 * tell them apart. Some iterations shift the whole stack with alloca. f3
 * keeps six fresh values live across its call, so that built without frame
 * pointers it holds one in rbp: the saved rbp words then change with every
 * call, and the memo must tell the ones that matter from the ones that do
 * not. */
#include <alloca.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static unsigned seed = 12345;
static unsigned next(void) { return seed = seed * 1103515245u + 12345u; }

static void *volatile sink;

static void step(int depth);

NOINLINE static void f0(int depth) {
    volatile char pad[16];
    pad[0] = (char)depth;
    step(depth);
    pad[1] = pad[0];
}

NOINLINE static void f1(int depth) {
    volatile char pad[48];
    pad[0] = (char)depth;
    step(depth);
    pad[1] = pad[0];
}

NOINLINE static void f2(int depth) {
    volatile char pad[80];
    pad[0] = (char)depth;
    step(depth);
    pad[1] = pad[0];
}

static volatile unsigned kept[6];

NOINLINE static void f3(int depth) {
    unsigned a = next(), b = next(), c = next(), d = next(), e = next(), g = next();
    step(depth);
    kept[0] = a, kept[1] = b, kept[2] = c, kept[3] = d, kept[4] = e, kept[5] = g;
}

/* Allocates (size tells the depth) or goes one call deeper. */
NOINLINE static void step(int depth) {
    if (depth == 0) {
        void *p = malloc(16 + (next() >> 16) % 4);
        sink = p;
        free(p);
        return;
    }
    switch ((next() >> 16) % 4) {
    case 0: f0(depth - 1); break;
    case 1: f1(depth - 1); break;
    case 2: f2(depth - 1); break;
    default: f3(depth - 1); break;
    }
}

NOINLINE static void shifted(int depth, unsigned shift) {
    volatile char *gap = alloca(shift);
    gap[0] = 1;
    step(depth);
    gap[1] = gap[0];
}

int main(void) {
    for (int i = 0; i < 20000; i++) {
        int depth = (int)((next() >> 16) % 7);
        if (i % 5 == 0)
            shifted(depth, 16 * (1 + (next() >> 16) % 8));
        else
            step(depth);
    }
    return 0;
}

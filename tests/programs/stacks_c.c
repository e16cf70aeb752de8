/* The deepest known call chain: main -> level_1 -> ... -> level_12 -> malloc,
 * built -O2 -fomit-frame-pointer -g. level_6 is always inlined into level_5.
 * Every call line is marked with a comment that the test looks up. Each level
 * uses its callee's result, so that no call becomes a tail call (a jump that
 * would leave no frame). main reaches the chain from two call sites: two
 * sites, one function (--group function sums them). */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, noclone))
#define ALLOC_SIZE 123457

#ifdef REBUILT
/* A different program at the same path (the rebuilt-on-disk test). */
volatile int rebuilt_marker = 42;
#endif

static void *kept[4];
static int n_kept;
volatile int sink;

NOINLINE int level_12(int x) {
    void *p = malloc(ALLOC_SIZE + x); /* @alloc */
    kept[n_kept++] = p;
    return (int)((long)p & 1) + x;
}
NOINLINE int level_11(int x) { int r = level_12(x); /* @call11 */ sink = r; return r + 1; }
NOINLINE int level_10(int x) { int r = level_11(x); /* @call10 */ sink = r; return r + 1; }
NOINLINE int level_9(int x) { int r = level_10(x); /* @call9 */ sink = r; return r + 1; }
NOINLINE int level_8(int x) { int r = level_9(x); /* @call8 */ sink = r; return r + 1; }
NOINLINE int level_7(int x) { int r = level_8(x); /* @call7 */ sink = r; return r + 1; }
static inline __attribute__((always_inline)) int level_6(int x) {
    int r = level_7(x); /* @call6 */
    sink = r;
    return r + 1;
}
NOINLINE int level_5(int x) { int r = level_6(x); /* @call5 */ sink = r; return r + 1; }
NOINLINE int level_4(int x) { int r = level_5(x); /* @call4 */ sink = r; return r + 1; }
NOINLINE int level_3(int x) { int r = level_4(x); /* @call3 */ sink = r; return r + 1; }
NOINLINE int level_2(int x) { int r = level_3(x); /* @call2 */ sink = r; return r + 1; }
NOINLINE int level_1(int x) { int r = level_2(x); /* @call1 */ sink = r; return r + 1; }

int main(void) {
    int a = level_1(0); /* @main */
    int b = level_1(1); /* @main2 */
    printf("%d\n", (a + b) > 0);
    for (int i = 0; i < n_kept; i++)
        free(kept[i]);
    return 0;
}

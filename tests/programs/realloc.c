/* realloc chains: growth step by step (in place or moving, whatever the
 * allocator does: it counts the same), across the mmap threshold, shrinking,
 * realloc(NULL, n) and reallocarray. */
#include "tally.h"

int main(void)
{
    /* realloc(NULL, n) allocates */
    char *buf = t_realloc(NULL, 0, 16);
    size_t n = 16;
    buf[0] = 1;

    /* grow by small steps: mostly in place */
    for (int i = 0; i < 50; i++) {
        size_t m = n + 8;
        buf = t_realloc(buf, n, m);
        n = m;
    }
    /* an obstacle right after the buffer, then grow: moves */
    void *obstacle = t_malloc(40);
    for (int i = 0; i < 14; i++) {
        size_t m = n * 2;
        buf = t_realloc(buf, n, m); /* up to ~6 MiB: past the mmap threshold */
        n = m;
        buf[n - 1] = (char)i;
    }
    /* shrink in steps */
    for (int i = 0; i < 10; i++) {
        size_t m = n / 3;
        buf = t_realloc(buf, n, m);
        n = m;
    }
    t_free(obstacle, 40);

    /* reallocarray: NULL start, growth, shrink */
    int *arr = t_reallocarray(NULL, 0, 10, sizeof(int));
    size_t an = 10 * sizeof(int);
    for (int i = 0; i < 6; i++) {
        size_t cnt = (size_t)(20 << i);
        arr = t_reallocarray(arr, an, cnt, sizeof(int));
        an = cnt * sizeof(int);
        arr[cnt - 1] = i;
    }
    arr = t_reallocarray(arr, an, 100, sizeof(int));
    an = 100 * sizeof(int);

    /* a second chain that is freed */
    char *c = t_malloc(100);
    for (int i = 0; i < 20; i++) {
        c = t_realloc(c, (size_t)(100 + 50 * i), (size_t)(150 + 50 * i));
    }
    t_free(c, 100 + 50 * 20);

    /* leaked at exit: buf (n bytes) and arr (an bytes) */
    tally_escape(buf);
    tally_escape(arr);
    tally_print("realloc");
    return 0;
}

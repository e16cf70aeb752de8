/* Three functions leak distinct, known amounts from distinct sites; the rest
 * of the program's allocations (churn) are all freed. */
#include "tally.h"

#define SMALL_N 100
#define SMALL_SIZE 24
#define PAGE_N 10
#define PAGE_SIZE_ 4096
#define BIG_SIZE (1024 * 1024)

void *kept[SMALL_N + PAGE_N + 1];

/* Loop counts read through volatiles: no unrolling, so each leak is ONE call
 * site (one stack). */
static volatile int small_n = SMALL_N, page_n = PAGE_N;

__attribute__((noinline, noclone)) void leak_small_objects(void)
{
    for (int i = 0; i < small_n; i++)
        kept[i] = t_malloc(SMALL_SIZE);
}

__attribute__((noinline, noclone)) void leak_pages(void)
{
    for (int i = 0; i < page_n; i++)
        kept[SMALL_N + i] = t_calloc(1, PAGE_SIZE_);
}

__attribute__((noinline, noclone)) void leak_one_mebibyte(void)
{
    kept[SMALL_N + PAGE_N] = t_malloc(BIG_SIZE);
}

__attribute__((noinline, noclone)) void churn(void)
{
    void *slots[16] = {0};
    size_t sizes[16] = {0};
    for (int i = 0; i < 2000; i++) {
        int k = i % 16;
        t_free(slots[k], sizes[k]);
        sizes[k] = (size_t)(i % 300) + 1;
        slots[k] = (i % 3 == 0) ? t_calloc(sizes[k], 1) : t_malloc(sizes[k]);
    }
    for (int k = 0; k < 16; k++)
        t_free(slots[k], sizes[k]);
    /* one large, short-lived block */
    void *big = t_malloc(3 * 1024 * 1024);
    t_free(big, 3 * 1024 * 1024);
}

int main(void)
{
    churn();
    leak_small_objects();
    churn();
    leak_pages();
    leak_one_mebibyte();
    churn();
    tally_print("leak_sites");
    return 0;
}

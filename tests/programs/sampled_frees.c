/* Frees of sampled blocks must be seen when sampling: the shim only records
 * the frees of blocks it sampled, so a missed one shows up as a live block.
 * At one sample per 64 KiB, blocks of at least 64 KiB are always sampled,
 * so these live totals are exact:
 *   keep_large:          40 x 100,000 B, kept              (4,000,000 B live)
 *   grow_small_to_large: 10 x 100 B grown to 200,000 B, kept (2,000,000 B live)
 *   drop_large:          60 x 100,000 B, freed
 *   drop_elsewhere:      60 x 80,000 B, freed by another thread
 *   grow_large:          20 x 70,000 B grown twice by realloc, freed
 *   churn_small:        200,000 x 64 B, freed (a few of them sampled)
 *   calloc_large:        30 x 90,000 B by calloc, freed */
#include <pthread.h>
#include <stdlib.h>

static void *kept[40];
static void *grown[10];
static void *handed[60];

__attribute__((noinline)) static void keep_large(void) {
    for (int i = 0; i < 40; i++) {
        kept[i] = malloc(100000);
        __asm__ volatile("" : : "r"(kept[i]) : "memory");
    }
}

__attribute__((noinline)) static void grow_small_to_large(void) {
    for (int i = 0; i < 10; i++) {
        void *p = malloc(100);
        grown[i] = realloc(p, 200000);
        __asm__ volatile("" : : "r"(grown[i]) : "memory");
    }
}

__attribute__((noinline)) static void drop_large(void) {
    for (int i = 0; i < 60; i++) {
        void *p = malloc(100000);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

static void *free_handed(void *arg) {
    (void)arg;
    for (int i = 0; i < 60; i++)
        free(handed[i]);
    return NULL;
}

__attribute__((noinline)) static void drop_elsewhere(void) {
    for (int i = 0; i < 60; i++)
        handed[i] = malloc(80000);
    pthread_t t;
    pthread_create(&t, NULL, free_handed, NULL);
    pthread_join(t, NULL);
}

__attribute__((noinline)) static void grow_large(void) {
    for (int i = 0; i < 20; i++) {
        void *p = malloc(70000);
        p = realloc(p, 140000);
        p = realloc(p, 280000);
        free(p);
    }
}

__attribute__((noinline)) static void churn_small(void) {
    for (int i = 0; i < 200000; i++) {
        void *p = malloc(64);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

__attribute__((noinline)) static void calloc_large(void) {
    for (int i = 0; i < 30; i++) {
        void *p = calloc(1, 90000);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

int main(void) {
    keep_large();
    grow_small_to_large();
    drop_large();
    drop_elsewhere();
    grow_large();
    churn_small();
    calloc_large();
    return 0;
}

/* Where the program's own blocks go, in the main thread and in a second
 * thread: offsets from the first block, whether each realloc step moved the
 * buffer, and (in the second thread) the heap's in-use bytes as mallinfo2
 * counts them. Only what the
 * program allocates after its start is printed, so the output is the same
 * with and without a preloaded profiler, unless the profiler's own memory
 * shares the program's heap. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void routine(const char *who) {
    /* A thread's first malloc sets up its cache of free blocks (inside the
     * heap); a preloaded library may have made that first call already. */
    free(malloc(1));
    size_t base = mallinfo2().uordblks;
    char *first = malloc(40);
    char *blocks[64];
    for (int i = 0; i < 64; i++)
        blocks[i] = malloc(16 + (size_t)(i * 37) % 700);
    for (int i = 0; i < 64; i += 3) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    for (int round = 0; round < 50; round++) {
        char *buf = NULL, *was = NULL;
        int moves = 0;
        for (size_t n = 64; n <= 65536; n *= 2) {
            buf = realloc(buf, n);
            buf[n - 1] = 1;
            moves += was != NULL && buf != was;
            was = buf;
        }
        if (round % 10 == 0)
            printf("%s round %d: %d moves, buffer at first%+td\n", who, round, moves, buf - first);
        free(buf);
    }
    for (int i = 0; i < 64; i++)
        if (blocks[i])
            printf("%s block %d at first%+td\n", who, i, blocks[i] - first);
    /* Not in the main thread: a preloaded library's start-up (its own
     * threads' set-up by libc) may leave blocks in the main thread's cache,
     * which mallinfo2 counts as in use. */
    if (who[0] == 't')
        printf("%s in use since start: %zd\n", who, (ssize_t)(mallinfo2().uordblks - base));
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    free(first);
}

static void *thread_main(void *arg) {
    routine(arg);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    routine("main");
    pthread_t t;
    pthread_create(&t, NULL, thread_main, "thread");
    pthread_join(t, NULL);
    return 0;
}

/* Allocation microbenchmark for `make bench`.
 * usage: alloc MODE THREADS OPS
 *   small   malloc/free pairs of 16..128 bytes, a few live at a time
 *   mixed   sizes from 16 bytes to 64 KiB, a window of 256 live blocks
 *   realloc buffers grown step by step with realloc, then freed */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *mode;
static long ops;

static unsigned next_rand(unsigned *s) { *s = *s * 1103515245u + 12345u; return *s >> 8; }

static void *work(void *arg) {
    unsigned seed = (unsigned)(long)arg + 1;
    void *window[256] = {0};
    for (long i = 0; i < ops; i++) {
        unsigned r = next_rand(&seed);
        if (mode[0] == 's') {
            void *p = malloc(16 + (r & 112));
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
        } else if (mode[0] == 'm') {
            unsigned slot = r & 255;
            free(window[slot]);
            size_t size = (r >> 8) % 16 == 0 ? 4096 + (r % 61440) : 16 + (r % 496);
            window[slot] = malloc(size);
            __asm__ volatile("" : : "r"(window[slot]) : "memory");
        } else {
            char *buf = NULL;
            for (size_t n = 64; n <= 16384; n *= 2) {
                buf = realloc(buf, n);
                buf[n - 1] = 1;
            }
            free(buf);
            i += 8;
        }
    }
    for (int i = 0; i < 256; i++)
        free(window[i]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s small|mixed|realloc THREADS OPS\n", argv[0]);
        return 2;
    }
    mode = argv[1];
    int threads = atoi(argv[2]);
    ops = atol(argv[3]);
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&t[i], NULL, work, (void *)(long)i);
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(t[i], NULL);
    return 0;
}

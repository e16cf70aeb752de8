/* argv[1] = "realloc": 200 buffers, each grown 16 B at a time to 1 KiB with
 * realloc, then freed. "clean": ten blocks allocated and freed. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static char *grow(char *p, size_t n) { return realloc(p, n); }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "realloc") == 0) {
        for (int b = 0; b < 200; b++) {
            char *p = NULL;
            for (size_t n = 16; n <= 1024; n += 16) {
                p = grow(p, n);
                p[n - 1] = 1;
            }
            free(p);
        }
    } else {
        void *p[10];
        for (int i = 0; i < 10; i++) p[i] = malloc(100);
        for (int i = 0; i < 10; i++) free(p[i]);
    }
    return 0;
}

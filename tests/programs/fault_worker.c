/* For the fault tests: allocates continuously for a while (a fixed amount of
 * work), prints a deterministic result on stdout and exits with code 3. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Formats on the stack and write(2)s: no stdio buffer, so the program's only
 * heap blocks are its own (exactly rounds x 100000 mallocs, all freed). */
static void say(const char *fmt, long r, unsigned long long v)
{
    char line[128];
    int n = snprintf(line, sizeof line, fmt, r, v);
    if (write(1, line, (size_t)n) != n)
        _exit(98);
}

#ifndef ROUNDS
#define ROUNDS 40
#endif

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : ROUNDS;
    uint64_t sum = 0x12345;
    void *ring[256] = {0};
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 100000; i++) {
            int k = i & 255;
            free(ring[k]);
            size_t n = 16 + (size_t)((i * 7 + r) % 500);
            unsigned char *p = malloc(n);
            if (!p) return 99;
            memset(p, (int)(i & 0xff), n);
            sum = sum * 31 + p[n / 2] + n;
            ring[k] = p;
        }
        say("round %ld checksum %016llx\n", r, (unsigned long long)sum);
    }
    for (int k = 0; k < 256; k++)
        free(ring[k]);
    say("done %ld %016llx\n", rounds, (unsigned long long)sum);
    return 3;
}

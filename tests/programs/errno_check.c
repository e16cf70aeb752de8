/* errno and results after allocation calls that succeed and that fail: the
 * output must be byte-identical with and without the shim, and failed calls
 * are no blocks. Blocks: malloc(100), calloc(10, 10), realloc -> 200,
 * malloc(0), all freed (400 bytes), plus stdout's buffer (stdout is a file),
 * which stays: 5 allocated, 4 freed, 1 live. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A failed realloc leaves its block alone: p stays valid. */
#pragma GCC diagnostic ignored "-Wuse-after-free"

static void *volatile sink;

#define SHOW(label, expr)                                                   \
    do {                                                                    \
        errno = 4321;                                                       \
        void *r_ = (void *)(uintptr_t)(expr);                               \
        int e_ = errno;                                                     \
        sink = r_;                                                          \
        printf("%-34s %-6s errno=%d\n", label, r_ ? "ptr" : "null", e_);    \
    } while (0)

int main(void)
{
    volatile size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2 + 2;
    void *p = NULL;

    SHOW("malloc(100)", p = malloc(100));
    errno = 4321; free(p); printf("%-34s %-6s errno=%d\n", "free(p)", "-", errno);
    errno = 4321; free(NULL); printf("%-34s %-6s errno=%d\n", "free(NULL)", "-", errno);
    SHOW("malloc(huge)", malloc(huge));
    SHOW("calloc(overflow)", calloc(half, 4));
    SHOW("calloc(10, 10)", p = calloc(10, 10));
    SHOW("realloc(p, huge)", realloc(p, huge));
    SHOW("realloc(p, 200)", p = realloc(p, 200));
    SHOW("reallocarray(p, overflow)", reallocarray(p, half, 4));
    free(p);
    errno = 4321;
    int rc = posix_memalign(&p, 3, 64); /* bad alignment: EINVAL returned, errno untouched */
    printf("%-34s rc=%d errno=%d\n", "posix_memalign(3, 64)", rc, errno);
    errno = 4321;
    rc = posix_memalign(&p, 64, huge);
    printf("%-34s rc=%d errno=%d\n", "posix_memalign(64, huge)", rc, errno);
    SHOW("memalign(64, huge)", memalign(64, huge));
    SHOW("aligned_alloc(64, huge)", aligned_alloc(64, huge));
    SHOW("valloc(huge)", valloc(huge));
    SHOW("malloc(0)", p = malloc(0));
    free(p);
    return 0;
}

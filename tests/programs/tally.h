/*
 * tally.h - a test program's own account of its heap activity.
 *
 * Every allocation call the program makes goes through one of the t_*
 * wrappers below, which call the real function and count:
 *
 *   blocks_allocated  every block handed out (malloc, calloc, the aligned
 *                     variants, and each realloc that returned a block)
 *   blocks_freed      every block released (free, and the old block of a
 *                     realloc that was given one)
 *   bytes_allocated   requested sizes (calloc = nmemb * size)
 *   live_bytes/blocks what is still allocated
 *   peak_bytes        the highest live_bytes ever reached
 *
 * Frees take the block's requested size, which the program always knows.
 * The counters are atomics so threads may share them; the programs are
 * written so that the peak is the same in every interleaving.
 *
 * tally_print() writes ONE JSON line on stderr: {"tally":1,"pid":...}.
 * stderr is unbuffered, so printing allocates nothing. Never write to stdout
 * through stdio in a tally program: its buffer is a heap allocation.
 *
 * After fork(), the child calls tally_fork_child(): from then on its counters
 * count only what the child does (its starting live set is the parent's), and
 * the line also gives the counts inherited from before the fork ("base_*"),
 * which a tool that follows the child from the same memory image (valgrind)
 * adds to its own.
 *
 * Usable from C and C++ (C++ code counts new/delete with tally_alloc/free).
 */
#ifndef MEMSHIM_TALLY_H
#define MEMSHIM_TALLY_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tally_counters {
    long blocks_allocated, blocks_freed, bytes_allocated;
    long live_bytes, live_blocks, peak_bytes;
    long base_blocks_allocated, base_blocks_freed, base_bytes_allocated;
};

/* One instance per process image (static inline functions share it through
 * this weak definition, so several translation units could include it). */
__attribute__((weak)) struct tally_counters tally_g;

#define TALLY_ADD(field, v) __atomic_add_fetch(&tally_g.field, (long)(v), __ATOMIC_SEQ_CST)
#define TALLY_LOAD(field) __atomic_load_n(&tally_g.field, __ATOMIC_SEQ_CST)

/* Hides a pointer from the optimiser, so no allocation is ever elided. */
static inline void *tally_escape(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static inline void tally_alloc(void *p, size_t n)
{
    if (!p) {
        fprintf(stderr, "tally: allocation of %zu bytes failed\n", n);
        abort();
    }
    TALLY_ADD(blocks_allocated, 1);
    TALLY_ADD(bytes_allocated, n);
    TALLY_ADD(live_blocks, 1);
    long live = TALLY_ADD(live_bytes, n);
    long peak = TALLY_LOAD(peak_bytes);
    while (live > peak &&
           !__atomic_compare_exchange_n(&tally_g.peak_bytes, &peak, live, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

static inline void tally_free(size_t n)
{
    TALLY_ADD(blocks_freed, 1);
    TALLY_ADD(live_blocks, -1);
    TALLY_ADD(live_bytes, -(long)n);
}

static inline void *t_malloc(size_t n)
{
    void *p = tally_escape(malloc(n));
    tally_alloc(p, n);
    return p;
}

static inline void *t_calloc(size_t nmemb, size_t size)
{
    void *p = tally_escape(calloc(nmemb, size));
    tally_alloc(p, nmemb * size);
    return p;
}

/* old_n: the block's requested size (ignored when p is NULL); new_n > 0. */
static inline void *t_realloc(void *p, size_t old_n, size_t new_n)
{
    void *q = tally_escape(realloc(tally_escape(p), new_n));
    if (p)
        tally_free(old_n);
    tally_alloc(q, new_n);
    return q;
}

static inline void *t_reallocarray(void *p, size_t old_n, size_t nmemb, size_t size)
{
    void *q = tally_escape(reallocarray(tally_escape(p), nmemb, size));
    if (p)
        tally_free(old_n);
    tally_alloc(q, nmemb * size);
    return q;
}

static inline void t_free(void *p, size_t n)
{
    if (!p)
        return;
    tally_free(n);
    free(tally_escape(p));
}

static inline void *t_posix_memalign(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n) != 0)
        p = NULL;
    tally_alloc(tally_escape(p), n);
    return p;
}

static inline void *t_aligned_alloc(size_t align, size_t n)
{
    void *p = tally_escape(aligned_alloc(align, n));
    tally_alloc(p, n);
    return p;
}

static inline void *t_memalign(size_t align, size_t n)
{
    void *p = tally_escape(memalign(align, n));
    tally_alloc(p, n);
    return p;
}

static inline void *t_valloc(size_t n)
{
    void *p = tally_escape(valloc(n));
    tally_alloc(p, n);
    return p;
}

/* In the child right after fork(): count only the child's own calls from now
 * on; the live set (and so the peak's starting point) is inherited. */
static inline void tally_fork_child(void)
{
    tally_g.base_blocks_allocated += tally_g.blocks_allocated;
    tally_g.base_blocks_freed += tally_g.blocks_freed;
    tally_g.base_bytes_allocated += tally_g.bytes_allocated;
    tally_g.blocks_allocated = 0;
    tally_g.blocks_freed = 0;
    tally_g.bytes_allocated = 0;
    tally_g.peak_bytes = tally_g.live_bytes;
}

/* Prints the tally line; call it last, right before returning from main
 * (or exit()), so that it describes the process at exit. */
static inline void tally_print(const char *program)
{
    fprintf(stderr,
            "{\"tally\":1,\"program\":\"%s\",\"pid\":%ld,\"ppid\":%ld,"
            "\"blocks_allocated\":%ld,\"blocks_freed\":%ld,\"bytes_allocated\":%ld,"
            "\"live_bytes\":%ld,\"live_blocks\":%ld,\"peak_bytes\":%ld,"
            "\"base_blocks_allocated\":%ld,\"base_blocks_freed\":%ld,"
            "\"base_bytes_allocated\":%ld}\n",
            program, (long)getpid(), (long)getppid(), TALLY_LOAD(blocks_allocated),
            TALLY_LOAD(blocks_freed), TALLY_LOAD(bytes_allocated), TALLY_LOAD(live_bytes),
            TALLY_LOAD(live_blocks), TALLY_LOAD(peak_bytes), tally_g.base_blocks_allocated,
            tally_g.base_blocks_freed, tally_g.base_bytes_allocated);
}

#ifdef __cplusplus
}
#endif

#endif

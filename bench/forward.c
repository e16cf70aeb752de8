/* The floor of interposition, for `make bench`: a preloaded library whose
 * malloc, calloc, realloc and free only forward to glibc's. Whatever it
 * costs a workload (the extra call through the PLT, the lost inlining of the
 * allocator's entry points) no LD_PRELOAD profiler can avoid; memshim's
 * sampled mode is measured against it as well as against the plain run. */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

void *malloc(size_t size) { return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }

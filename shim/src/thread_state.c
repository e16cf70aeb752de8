/* Per-thread state of the shim, in initial-exec TLS (see build.rs for why C).
 * The layout must match `ThreadState` in thread_state.rs. */
#include <stdint.h>

struct memshim_thread_state {
    uint32_t guard;     /* non-zero while the shim itself runs on this thread */
    uint32_t tid;       /* cached kernel thread id, 0 until first needed */
    /* The in-process unwinder's per-thread part (see src/unwind/mod.rs). */
    void *unwind_cache;      /* this thread's framehop cache, NULL until its first capture */
    uintptr_t stack_lo;      /* lowest address of this thread's stack, 0 until known */
    uintptr_t stack_hi;      /* one past its highest address */
    uint32_t unwind_slot;    /* this thread's reader slot in the module registry */
    uint32_t unwind_status;  /* 0 not set up, 1 ready, 2 failed, 3 thread exiting */
    /* The sampler's per-thread part (see src/sampler.rs). */
    int64_t sample_countdown; /* bytes until the next sample point */
    uint64_t sample_rng;      /* xorshift state, 0 until seeded */
};

/* Hidden, so that Rust can address it directly with an initial-exec TLS
 * relocation on x86_64 (thread_state.rs); other targets call the accessor. */
__thread struct memshim_thread_state memshim_tls_state
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

struct memshim_thread_state *memshim_thread_state(void) { return &memshim_tls_state; }

/* Per-thread state of the shim, in initial-exec TLS (see build.rs for why C).
 * The layout must match `ThreadState` in thread_state.rs. */
#include <stdint.h>

struct memshim_thread_state {
    uint32_t guard;     /* non-zero while the shim itself runs on this thread */
    uint32_t tid;       /* cached kernel thread id, 0 until first needed */
};

static __thread struct memshim_thread_state state
    __attribute__((tls_model("initial-exec")));

struct memshim_thread_state *memshim_thread_state(void) { return &state; }

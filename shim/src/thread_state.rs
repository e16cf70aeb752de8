//! Per-thread state: the reentrancy guard, the cached thread id and the
//! unwinder's per-thread part ([`UnwindTls`]).
//!
//! Everything the shim does that may allocate (stack capture, queueing,
//! `dlsym`, thread creation) runs with this thread's guard set; hooked calls
//! made meanwhile go straight to the real functions, unrecorded.

/// Mirrors `struct memshim_thread_state` in `thread_state.c`.
#[repr(C)]
pub struct ThreadState {
    guard: u32,
    tid: u32,
    unwind: UnwindTls,
    sampler: SamplerTls,
}

/// The sampler's per-thread state (see `crate::sampler`). Mirrors the
/// `sample_*` fields of `struct memshim_thread_state`.
#[repr(C)]
pub struct SamplerTls {
    /// Bytes of small allocations until the next sample point.
    pub countdown: i64,
    /// Random generator state, 0 until seeded.
    pub rng: u64,
}

/// The unwinder's per-thread state (see `crate::unwind`), set up on the
/// thread's first capture. Mirrors the `unwind_*`/`stack_*` fields of
/// `struct memshim_thread_state`.
#[repr(C)]
pub struct UnwindTls {
    /// This thread's framehop cache (a leaked `Box`), null until set up.
    pub cache: *mut std::ffi::c_void,
    /// Lowest address of this thread's stack, 0 until known.
    pub stack_lo: usize,
    /// One past the highest address of this thread's stack.
    pub stack_hi: usize,
    /// This thread's reader slot in the module registry.
    pub slot: u32,
    /// One of the `crate::unwind::STATUS_*` values.
    pub status: u32,
}

#[cfg(target_arch = "x86_64")]
extern "C" {
    /// The C definition (a TLS variable; only its address is ever taken, in `state`).
    static memshim_tls_state: ThreadState;
}

/// This thread's state: its initial-exec TLS block, valid for the thread's
/// whole life and touched by this thread only.
///
/// On x86_64 the address is computed inline, as a C compiler does for an
/// initial-exec variable: the thread pointer plus the variable's offset from
/// the GOT. That keeps a function call off the hooks' fast path, which must
/// stay a few instructions long (stable Rust has no `#[thread_local]`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn state() -> *mut ThreadState {
    let p: *mut ThreadState;
    // SAFETY: reads the thread pointer and a GOT entry the dynamic linker
    // filled with the variable's TLS offset; nothing is written.
    unsafe {
        std::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + {var}@GOTTPOFF]",
            p = out(reg) p,
            var = sym memshim_tls_state,
            options(pure, readonly, nostack),
        );
    }
    p
}

#[cfg(not(target_arch = "x86_64"))]
extern "C" {
    fn memshim_thread_state() -> *mut ThreadState;
}

/// This thread's state (see the x86_64 version), through the C accessor.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn state() -> *mut ThreadState {
    // SAFETY: the accessor returns this thread's initial-exec TLS block.
    unsafe { memshim_thread_state() }
}

/// Proof that this thread's guard is held; releases it when dropped.
pub struct Guard {
    state: *mut ThreadState,
}

impl Guard {
    /// Takes the guard, or returns `None` if the shim is already active on this thread.
    #[inline(always)]
    pub fn enter() -> Option<Guard> {
        let state = state();
        // SAFETY: the state belongs to this thread (see `state`).
        unsafe {
            if (*state).guard != 0 {
                return None;
            }
            (*state).guard = 1;
        }
        Some(Guard { state })
    }

    /// Kernel id of the current thread, cached after the first call.
    #[inline(always)]
    pub fn tid(&self) -> u32 {
        // SAFETY: the state belongs to this thread; gettid cannot fail.
        unsafe {
            if (*self.state).tid == 0 {
                (*self.state).tid = libc::syscall(libc::SYS_gettid) as u32;
            }
            (*self.state).tid
        }
    }
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the state belongs to this thread.
        unsafe { (*self.state).guard = 0 }
    }
}

/// Sets the guard for good: used by the shim's own threads, whose every
/// allocation must go unrecorded.
pub fn guard_forever() {
    // SAFETY: the state belongs to this thread.
    unsafe { (*state()).guard = 1 }
}

/// This thread's sampler state.
#[inline(always)]
pub fn sampler_tls() -> *mut SamplerTls {
    // SAFETY: a field of this thread's own state.
    unsafe { std::ptr::addr_of_mut!((*state()).sampler) }
}

/// Forgets the cached thread id: after `fork` the child's thread has a new one.
pub fn forget_tid() {
    // SAFETY: the state belongs to this thread.
    unsafe { (*state()).tid = 0 }
}

/// This thread's unwinder state.
///
/// The pointer is valid for the thread's whole life (initial-exec TLS) and
/// must only be used by this thread.
#[inline(always)]
pub fn unwind_tls() -> *mut UnwindTls {
    // SAFETY: see `state`; taking a field's address reads nothing.
    unsafe { std::ptr::addr_of_mut!((*state()).unwind) }
}

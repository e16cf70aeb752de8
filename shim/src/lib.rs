//! `libmemshim.so`: the in-process half of memshim.
//!
//! Loaded with `LD_PRELOAD`, it interposes the allocation functions, records
//! each call with its call stack, and streams the events to the collector
//! (`memcollect`) over a Unix socket, or to a trace file.
//!
//! How a call travels:
//!
//! 1. A hook ([`hooks`]) calls the real function ([`real`]), then asks the
//!    [`recorder`] to record it (a free is recorded *before* the real free).
//! 2. The recorder takes this thread's reentrancy guard ([`thread_state`]),
//!    captures and interns the stack ([`stack`], with Python frames put in
//!    place by [`python`]) and pushes a fixed-size event
//!    into a lock-free queue ([`queue`]).
//! 3. One sender thread per process ([`sender`]) drains the queue, encodes
//!    batches (`memshim-proto`) and writes them out ([`writer`]), with the
//!    module map ([`modules`], kept current by [`announce`]) and periodic
//!    statistics. `exit` and `exec` take the writer and write the last
//!    batch themselves.
//!
//! [`lifecycle`] handles start-up, `fork`, `exec` and `exit`. The host must
//! never notice any of it: same output, same exit code, same `errno`.

mod allocator;
mod announce;
mod bootstrap;
mod clock;
mod config;
mod descriptors;
mod errno;
mod first_touch;
mod hooks;
mod leakscan;
mod lifecycle;
mod modules;
mod python;
mod queue;
mod real;
mod recorder;
mod ring;
mod sampled_set;
mod sampler;
mod sender;
mod stack;
mod thread_state;
mod threads;
mod trace_file;
mod unwind;
mod wake;
mod writer;

#[global_allocator]
static ALLOCATOR: allocator::ShimAllocator = allocator::ShimAllocator;

/// Writes one `memshim: …` line to stderr without touching the host's stdio buffers.
pub(crate) fn warn(msg: &str) {
    let line = format!("memshim: {msg}\n");
    // SAFETY: writing an owned buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

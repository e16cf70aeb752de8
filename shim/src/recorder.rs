//! Turning a hooked call into a queued event.
//!
//! Every function here is called by a hook *after* the real allocation (or
//! *before* the real release, see DESIGN.md), takes the thread's guard, keeps
//! `errno` exactly as the real call left it, and never blocks except for
//! lossless back-pressure on a full queue.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use memshim_proto::python::PYTHON_FRAME_TAG;

use crate::announce;
use crate::clock;
use crate::lifecycle;
use crate::python;
use crate::queue::{self, Channel, RawEvent, RawKind, StackRecord};
use crate::real;
use crate::sampled_set::{self, Membership, SampledSet};
use crate::sampler;
use crate::stack::{self, Frames, SeenSet, MAX_FRAMES};
use crate::thread_state::Guard;

static RECORDING: AtomicBool = AtomicBool::new(false);
static SEEN: AtomicPtr<SeenSet> = AtomicPtr::new(std::ptr::null_mut());
static DEPTH: AtomicUsize = AtomicUsize::new(0);

/// Arms recording with the given stack depth and interning table, and, when
/// sampling, the set of sampled addresses.
pub fn start(depth: usize, seen: SeenSet, sampled: Option<SampledSet>) {
    DEPTH.store(depth, Ordering::Relaxed);
    SEEN.store(Box::into_raw(Box::new(seen)), Ordering::Release);
    if let Some(set) = sampled {
        SampledSet::install(set);
    }
    RECORDING.store(true, Ordering::Release);
}

/// Stops recording for good (disabled, no collector, or the process is
/// ending). From then on every hooked call takes its fast path straight to
/// the real function: a shim that records nothing must cost next to nothing.
pub fn stop() {
    RECORDING.store(false, Ordering::Release);
    sampler::sample_nothing();
    sampled_set::no_frees_to_record();
}

/// Whether hooked calls are being recorded.
pub fn is_recording() -> bool {
    RECORDING.load(Ordering::Acquire)
}

/// Empties the stack-interning table (a forked child's stream knows no stacks yet).
pub fn forget_stacks() {
    // SAFETY: a published table is never freed.
    if let Some(seen) = unsafe { SEEN.load(Ordering::Acquire).as_ref() } {
        seen.clear();
    }
}

/// An active recording on this thread: holds the guard and restores `errno` when done.
struct Recording {
    guard: Guard,
    channel: &'static Channel,
    errno: i32,
}

impl Drop for Recording {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: errno is thread-local and always writable.
        unsafe { *libc::__errno_location() = self.errno };
    }
}

#[inline(always)]
fn begin() -> Option<Recording> {
    if !RECORDING.load(Ordering::Relaxed) {
        lifecycle::ensure_init();
        if !RECORDING.load(Ordering::Relaxed) {
            return None;
        }
    }
    let guard = Guard::enter()?;
    // SAFETY: errno is thread-local and always readable.
    let errno = unsafe { *libc::__errno_location() };
    lifecycle::ensure_stream();
    let channel = queue::channel()?;
    Some(Recording {
        guard,
        channel,
        errno,
    })
}

/// Captures the caller's stack and returns its id, queueing its definition
/// the first time this process sees it. In a Python process the
/// interpreter's frames are replaced by the Python functions they run.
#[inline(always)]
fn current_stack(rec: &Recording) -> u64 {
    let mut native = std::mem::MaybeUninit::<Frames>::uninit();
    // SAFETY: `capture` sets `len` and writes `ips[..len]` and `sps[..len]`
    // before anything reads them.
    let native = unsafe {
        let f = native.as_mut_ptr();
        (*f).len = 0;
        stack::capture(DEPTH.load(Ordering::Relaxed), &mut *f);
        &*f
    };
    // SAFETY: a published table is never freed.
    let seen = unsafe { SEEN.load(Ordering::Acquire).as_ref() };
    let mut merged = std::mem::MaybeUninit::<Frames>::uninit();
    let frames = if python::is_active() {
        // SAFETY: `merge` sets `len` and the entries below it when it returns true.
        unsafe {
            let m = merged.as_mut_ptr();
            (*m).len = 0;
            let first_sight = |code: u64| seen.is_none_or(|s| s.insert(PYTHON_FRAME_TAG | code));
            if python::merge(native, &mut *m, first_sight, rec.channel) {
                &*m
            } else {
                native
            }
        }
    } else {
        native
    };
    let ips = &frames.ips[..frames.len];
    let id = stack::stack_id(ips);
    if seen.is_none_or(|s| s.insert(id)) {
        // New code ran: perhaps from an object loaded since the last look.
        announce::before_new_stack();
        let mut record = StackRecord {
            id,
            len: ips.len() as u32,
            frames: [0; MAX_FRAMES],
        };
        record.frames[..ips.len()].copy_from_slice(ips);
        queue::push_stack(rec.channel, record);
    }
    id
}

/// Records a block returned by an allocation function (if it is sampled).
/// Out of line: the hooks' fast path ([`sampler::skip`]) must stay small.
#[inline(never)]
pub fn alloc(ptr: *mut c_void, size: usize, kind: RawKind) {
    if !sampler::sample(size) {
        return;
    }
    let Some(rec) = begin() else { return };
    if let Some(set) = SampledSet::global() {
        // A full bucket only means this block's free is recorded anyway.
        set.insert(ptr as u64);
    }
    let stack = current_stack(&rec);
    let usable = match real::get().and_then(|r| r.malloc_usable_size) {
        // SAFETY: `ptr` was just returned by the real allocator.
        Some(usable_size) => (unsafe { usable_size(ptr) }) as u64,
        None => size as u64,
    };
    queue::push(
        rec.channel,
        RawEvent {
            kind,
            tid: rec.guard.tid(),
            ts: clock::ticks(),
            addr: ptr as u64,
            size: size as u64,
            aux: usable,
            aux2: 0,
            stack,
        },
    );
}

/// Records that a block is about to be released (by `free`, or by `realloc`
/// if `realloc`). When sampling, only sampled blocks are recorded; returns
/// whether this one was. Out of line, like [`alloc`].
#[inline(never)]
pub fn free(ptr: *mut c_void, realloc: bool) -> bool {
    if let Some(set) = SampledSet::global() {
        if set.remove(ptr as u64) == Membership::NotSampled {
            return false;
        }
    }
    let Some(rec) = begin() else { return false };
    let kind = if realloc {
        RawKind::ReallocFree
    } else {
        RawKind::Free
    };
    queue::push(
        rec.channel,
        RawEvent::simple(kind, rec.guard.tid(), ptr as u64),
    );
    true
}

/// Records that the `realloc` which released `ptr` failed, leaving it
/// allocated (call only if its release was recorded).
pub fn realloc_failed(ptr: *mut c_void) {
    let Some(rec) = begin() else { return };
    if let Some(set) = SampledSet::global() {
        set.insert(ptr as u64);
    }
    queue::push(
        rec.channel,
        RawEvent::simple(RawKind::ReallocFailed, rec.guard.tid(), ptr as u64),
    );
}

/// Records a new mapping: its range, protection, flags and descriptor.
///
/// Without a stack: the collector keeps mappings as totals (anonymous and
/// file-backed), not by call site, and unwinding every `mmap` of a program
/// that maps many small files (`git log -p`: 5,300) made the sampled mode 8%
/// slower for nothing.
pub fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32) {
    let Some(rec) = begin() else { return };
    let mut ev = RawEvent::simple(RawKind::Mmap, rec.guard.tid(), addr as u64);
    ev.size = len as u64;
    ev.aux = (u64::from(prot as u32) << 32) | u64::from(flags as u32);
    ev.aux2 = fd as i64 as u64;
    queue::push(rec.channel, ev);
}

/// Records the range an `mremap` returned (or the old one, still mapped
/// after a failure): of the kind of the old range, which this thread's
/// [`munmap`] with `remap` recorded just before.
pub fn remapped(addr: *mut c_void, len: usize) {
    let Some(rec) = begin() else { return };
    let mut ev = RawEvent::simple(RawKind::Remapped, rec.guard.tid(), addr as u64);
    ev.size = len as u64;
    queue::push(rec.channel, ev);
}

/// Records that a range is about to be unmapped; `remap`: as the old range
/// of an `mremap`, whose new range [`remapped`] records next.
pub fn munmap(addr: *mut c_void, len: usize, remap: bool) {
    let Some(rec) = begin() else { return };
    let mut ev = RawEvent::simple(RawKind::Munmap, rec.guard.tid(), addr as u64);
    ev.size = len as u64;
    ev.aux = u64::from(remap);
    queue::push(rec.channel, ev);
}

/// Records that this process forked `child`.
pub fn forked(child: i32) {
    let Some(rec) = begin() else { return };
    queue::push(
        rec.channel,
        RawEvent::simple(RawKind::Forked, rec.guard.tid(), child as u64),
    );
}

/// Queues the request for the live set that the exit leak scan needs.
pub fn scan_request() -> bool {
    let Some(rec) = begin() else { return false };
    queue::push(
        rec.channel,
        RawEvent::simple(RawKind::ScanRequest, rec.guard.tid(), 0),
    );
    true
}

/// Queues the orderly end of the stream; nothing is recorded after it.
pub fn end(kind: RawKind, exit_code: Option<i32>) -> bool {
    let Some(rec) = begin() else { return false };
    let mut ev = RawEvent::simple(kind, rec.guard.tid(), exit_code.unwrap_or(0) as u32 as u64);
    ev.aux = u64::from(exit_code.is_some());
    if kind == RawKind::EndExit {
        stop();
    }
    queue::push(rec.channel, ev);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once nothing is recorded (this test process's own hooks found no
    /// collector at start-up; `stop` again to be sure), every call takes the
    /// fast path: allocations skip sampling and frees skip the set.
    #[test]
    fn a_shim_that_records_nothing_lets_every_call_through() {
        stop();
        std::thread::spawn(|| {
            // A thread's first call draws its countdown, on the slow path.
            // SAFETY: a plain allocation, freed at once.
            unsafe { libc::free(libc::malloc(64)) };
            assert!(sampler::skip(64));
            assert!(sampler::skip(1 << 30), "however large");
            assert!(sampled_set::surely_unsampled(0x5555_0000_1230));
        })
        .join()
        .unwrap();
    }
}

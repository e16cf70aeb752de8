//! The lock-free queues between the hooked threads and the sender thread.
//!
//! Events are fixed-size records in a bounded lock-free [`Ring`], so
//! queueing never allocates, locks or makes a system call. Stack definitions,
//! much larger and much rarer, have a queue of their own. When a queue is
//! full the producer waits for the sender (lossless back-pressure), unless no
//! sender can drain it, in which case the event is dropped and counted. A
//! waiting producer sleeps on a futex until the sender has drained the queue:
//! on a machine with fewer cores than busy threads, spinning or yielding
//! would take the CPU time the sender and the collector need to catch up.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_queue::SegQueue;
use memshim_proto::Event;

use crate::clock;
use crate::config::Config;
use crate::ring::Ring;
use crate::sender;
use crate::stack::MAX_FRAMES;
use crate::wake::Doorbell;

/// Queue sizes when every call is recorded: room for bursts while the sender writes.
const EXACT_CAPACITY: (usize, usize) = (1 << 14, 1 << 8);
/// Queue sizes when sampling sparsely ([`Config::samples_sparsely`]):
/// events are rare. (A queue's pages are backed only as it first reaches
/// them, so its size costs address space, not memory, until it is used.)
const SPARSE_CAPACITY: (usize, usize) = (1 << 10, 1 << 5);

/// What a [`RawEvent`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RawKind {
    /// `malloc`
    Malloc,
    /// `calloc`
    Calloc,
    /// the new block of a `realloc`/`reallocarray`
    Realloc,
    /// one of the aligned allocation functions
    Aligned,
    /// `free`
    Free,
    /// the old block of a `realloc`, released before the real call
    ReallocFree,
    /// the `realloc` that released `addr` failed; the block is still live
    ReallocFailed,
    /// `mmap`/`mmap64`/the new range of `mremap`; `aux` = prot << 32 | flags, `aux2` = fd
    Mmap,
    /// `munmap`/the old range of `mremap`; `aux` = 1 for the latter
    Munmap,
    /// the new range of `mremap` (or the old one again, if it failed)
    Remapped,
    /// this process forked; `addr` = child pid
    Forked,
    /// orderly end by `exit`; `addr` = exit code (as i32), `aux` = 1 if the code is known
    EndExit,
    /// about to `exec`
    EndExec,
    /// exiting normally: asks the collector for the live set to scan
    ScanRequest,
}

/// One queued event; the sender turns it into a protocol event.
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub kind: RawKind,
    pub tid: u32,
    /// When, in [`clock::ticks`] (the sender converts them).
    pub ts: u64,
    pub addr: u64,
    pub size: u64,
    pub aux: u64,
    pub aux2: u64,
    pub stack: u64,
}

impl RawEvent {
    /// An event with only a kind, thread and address set.
    pub fn simple(kind: RawKind, tid: u32, addr: u64) -> RawEvent {
        RawEvent {
            kind,
            tid,
            ts: clock::ticks(),
            addr,
            size: 0,
            aux: 0,
            aux2: 0,
            stack: 0,
        }
    }
}

/// A stack definition waiting to be sent.
#[derive(Clone, Copy)]
pub struct StackRecord {
    pub id: u64,
    pub len: u32,
    pub frames: [u64; MAX_FRAMES],
}

/// The queues of one process (a forked child gets fresh ones).
pub struct Channel {
    /// Allocation events: bounded, fixed-size, never allocates.
    pub events: Ring<RawEvent>,
    /// Stack definitions: bounded, rare.
    pub stacks: Ring<StackRecord>,
    /// Rare, large events built off the hot path (module announcements, the
    /// exit leak scan): unbounded, lock-free.
    pub rare: SegQueue<Event>,
}

static CHANNEL: AtomicPtr<Channel> = AtomicPtr::new(std::ptr::null_mut());
static LOST: AtomicU64 = AtomicU64::new(0);
/// Producers waiting for room in a queue.
static WAITERS: AtomicU32 = AtomicU32::new(0);
/// Rung by the sender when it has drained the queues and producers wait.
static DRAINED: Doorbell = Doorbell::new();
static WAIT_NS: AtomicU64 = AtomicU64::new(0);

/// Creates this process's queues, sized for `config`'s sampling; `false` if
/// they could not be mapped. Must run under the guard (it allocates).
///
/// In a forked child the old queues are abandoned, not freed or drained: a
/// thread of the parent may have been mid-push at the fork, leaving a slot
/// that would never become ready.
pub fn create(config: &Config) -> bool {
    let (events, stacks) = if config.samples_sparsely() {
        SPARSE_CAPACITY
    } else {
        EXACT_CAPACITY
    };
    let (Some(events), Some(stacks)) = (Ring::new(events), Ring::new(stacks)) else {
        return false;
    };
    let ch = Box::new(Channel {
        events,
        stacks,
        rare: SegQueue::new(),
    });
    CHANNEL.store(Box::into_raw(ch), Ordering::Release);
    true
}

/// The current queues, if created.
#[inline(always)]
pub fn channel() -> Option<&'static Channel> {
    // SAFETY: a published channel is never freed.
    unsafe { CHANNEL.load(Ordering::Acquire).as_ref() }
}

/// Queues an event, waiting while the queue is full and a sender drains it.
/// The sender sleeps between rounds; the pushes that fill the queue to one
/// half, five eighths, six and seven eighths wake it (several marks, in
/// case concurrent pushes step over one), so that bursts seldom find the
/// queue full and wait. The fill is looked at only while the sender sleeps:
/// reading the queue's length reads the sender's index, a cache line it
/// writes all the time while it drains.
#[inline(always)]
pub fn push(ch: &Channel, ev: RawEvent) {
    match ch.events.push(ev) {
        Ok(()) => wake_if_filling(&ch.events),
        Err(ev) => wait_push(|| ch.events.push(ev).map_err(|_| ())),
    }
}

/// Wakes a sleeping sender when `queue` has just reached one of the marks.
#[inline(always)]
fn wake_if_filling<T: Copy>(queue: &Ring<T>) {
    if !sender::is_asleep() {
        return;
    }
    let len = queue.len();
    let eighth = queue.capacity() / 8;
    if len >= 4 * eighth && len.is_multiple_of(eighth) {
        sender::wake();
    }
}

/// Whether a queue is at least half full: the sender then starts its next
/// round at once instead of sleeping.
pub fn filling_up(ch: &Channel) -> bool {
    ch.events.len() >= ch.events.capacity() / 2 || ch.stacks.len() >= ch.stacks.capacity() / 2
}

/// Queues a stack definition, with the same back-pressure as [`push`].
pub fn push_stack(ch: &Channel, rec: StackRecord) {
    let Err(rec) = ch.stacks.push(rec) else {
        wake_if_filling(&ch.stacks);
        return;
    };
    let mut rec = Some(rec);
    wait_push(
        || match ch.stacks.push(rec.take().expect("record present")) {
            Ok(()) => Ok(()),
            Err(back) => {
                rec = Some(back);
                Err(())
            }
        },
    );
}

#[cold]
fn wait_push(mut try_push: impl FnMut() -> Result<(), ()>) {
    let start = clock::monotonic_ns();
    WAITERS.fetch_add(1, Ordering::SeqCst);
    sender::wake();
    let mut pushed = false;
    // The doorbell is polled every millisecond, so a sender that died (or a
    // wake-up that crossed the waiter count) costs a millisecond, never a hang.
    DRAINED.wait_for(
        || {
            pushed = try_push().is_ok();
            pushed || !sender::is_live()
        },
        Duration::MAX,
    );
    WAITERS.fetch_sub(1, Ordering::SeqCst);
    if !pushed {
        LOST.fetch_add(1, Ordering::Relaxed);
    }
    WAIT_NS.fetch_add(clock::monotonic_ns() - start, Ordering::Relaxed);
}

/// Called by the sender after draining: wakes the producers waiting for room.
pub fn drained() {
    if WAITERS.load(Ordering::SeqCst) != 0 {
        DRAINED.ring_all();
    }
}

/// Events dropped so far because nothing could drain the queue.
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Nanoseconds the program's threads spent waiting for room in a queue.
pub fn wait_ns() -> u64 {
    WAIT_NS.load(Ordering::Relaxed)
}

/// Starts a forked child's counters afresh (they describe the parent).
pub fn reset_counters() {
    LOST.store(0, Ordering::Relaxed);
    WAIT_NS.store(0, Ordering::Relaxed);
    WAITERS.store(0, Ordering::Relaxed);
}

//! The in-process unwinder: the `.eh_frame` tables already in memory,
//! compiled to compact rules a function at a time, with framehop for what
//! those rules do not cover; no allocation, lock or system call while a
//! frame it has seen before unwinds.
//!
//! * [`registry`] keeps the set of loaded modules current and readable
//!   without a lock (the `dlclose` hook in `hooks::dl` updates it around
//!   unloads; loads are picked up when an unwind meets an unknown address).
//! * Each thread gets, on its first capture (under its guard, where
//!   allocating is fine): its table of rules by address ([`rule_table`],
//!   of [`rules`]), a framehop cache, its stack's bounds
//!   (from `/proc/self/maps`) and a reader slot, all kept in its initial-exec
//!   TLS state (`thread_state::UnwindTls`). A pthread key destructor frees
//!   them and the slot when the thread exits; the main thread's, left
//!   at `exit`, goes with the process.
//! * A thread's previous unwind is remembered with every stack word it read
//!   ([`memo`]): the outer frames of the next capture are copied, not
//!   unwound, when their state and those words are unchanged.
//! * Every stack read is checked against `[sp at capture, top of the
//!   thread's stack)`: everything in it is mapped, and a caller's frame is
//!   never anywhere else. A bad unwind (garbage CFI, code without unwind
//!   information) ends the stack, it cannot fault.
//!
//! [`capture`] returns `false` when it cannot run (set-up failed, no free
//! slot, the thread is exiting): the caller then uses the libgcc unwinder.
//!
//! Known limits: no unwinding through signal frames (the stack ends at the
//! handler); a capture on a stack other than the thread's own (a signal
//! alternate stack, a user-space coroutine stack) records no frames; code
//! without unwind information (JIT code) is crossed with framehop's
//! frame-pointer rule, which may end the stack early.

#![cfg(target_arch = "x86_64")]

mod barrier;
pub mod elf;
mod memo;
pub mod registry;
mod rule_table;
mod rules;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use framehop::x86_64::UnwindRegsX86_64;
use framehop::{FrameAddress, Unwinder as _};

use crate::stack::{Frames, MAX_FRAMES};
use crate::thread_state::{self, Guard, UnwindTls};
use memo::{Memo, Record};
use registry::Cache;
use rule_table::RuleTable;
use rules::Rule;

/// `UnwindTls::status`: not set up yet.
pub const STATUS_NEW: u32 = 0;
/// `UnwindTls::status`: cache, bounds and slot are ready.
pub const STATUS_READY: u32 = 1;
/// `UnwindTls::status`: set-up failed; this thread uses the fallback.
pub const STATUS_FAILED: u32 = 2;
/// `UnwindTls::status`: the thread is exiting and its cache is freed.
pub const STATUS_EXITED: u32 = 3;

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_READY: u8 = 2;
const INIT_FAILED: u8 = 3;

static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);
/// Whether captures reuse the thread's previous unwind ([`memo`]).
static MEMO: AtomicBool = AtomicBool::new(true);
/// The pthread key whose destructor frees a thread's cache at its exit.
static mut CACHE_KEY: libc::pthread_key_t = 0;

/// Most unwinding steps per capture: every kept frame plus the shim's own.
const MAX_STEPS: usize = MAX_FRAMES + 32;
/// How many remembered frames in the same state a capture checks for reuse
/// (a failed check costs a walk over the remembered reads).
const MAX_REUSE_CHECKS: u32 = 2;

/// A thread's unwinding state: its rules by address, framehop's cache for
/// the frames those rules leave to framehop, and the memo of its previous
/// unwind.
struct ThreadUnwinder {
    rules: RuleTable,
    framehop: Box<Cache>,
    memo: Box<Memo>,
}

/// Appends a frame to `out`; returns whether `out` holds `depth` frames.
#[inline(always)]
fn push(out: &mut Frames, ip: u64, sp: u64, depth: usize) -> bool {
    out.ips[out.len] = ip;
    out.sps[out.len] = sp;
    out.len += 1;
    out.len >= depth
}

/// Turns the reuse of previous unwinds on or off (`MEMSHIM_UNWIND_MEMO`).
pub fn set_memo(enabled: bool) {
    MEMO.store(enabled, Ordering::Relaxed);
}

/// Registers the loaded modules and the per-thread machinery. Runs once,
/// from the shim's initialisation, with the guard held.
pub fn init() {
    if INIT
        .compare_exchange(INIT_NONE, INIT_RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // SAFETY: plain libc calls; the key is written before INIT_READY is
    // published and never again.
    let ok = unsafe {
        libc::pthread_key_create(std::ptr::addr_of_mut!(CACHE_KEY), Some(thread_exit)) == 0
            && libc::pthread_atfork(None, None, Some(after_fork_child)) == 0
    };
    if !ok {
        INIT.store(INIT_FAILED, Ordering::Release);
        return;
    }
    barrier::register();
    registry::refresh(None);
    INIT.store(INIT_READY, Ordering::Release);
}

/// The calling thread's reader slot, if it has one.
fn own_slot() -> Option<u32> {
    // SAFETY: this thread's own state.
    let tls = unsafe { &*thread_state::unwind_tls() };
    (tls.status == STATUS_READY).then_some(tls.slot)
}

/// Before the real `dlclose` (with the guard held).
pub fn before_dlclose() {
    if INIT.load(Ordering::Acquire) == INIT_READY {
        registry::begin_close(own_slot());
    }
}

/// After the real `dlclose` (with the guard held).
pub fn after_dlclose() {
    if INIT.load(Ordering::Acquire) == INIT_READY {
        registry::end_close(own_slot());
    }
}

/// Captures up to `depth` return addresses of the current thread into `out`,
/// leaving out those for which `is_own` holds. Returns `false` if this
/// thread cannot use the unwinder (the caller falls back).
///
/// Must run under the thread's guard. Allocates only on the thread's first
/// call and when it meets a function it has not unwound before (on the
/// shim's heap); otherwise: no allocation, no lock, no system call.
#[inline(never)]
pub fn capture(depth: usize, out: &mut Frames, is_own: impl Fn(u64) -> bool) -> bool {
    // SAFETY: this thread's own state, not aliased while we run (the guard
    // keeps the shim from re-entering on this thread).
    let tls = unsafe { &mut *thread_state::unwind_tls() };
    if tls.status != STATUS_READY && !set_up(tls) {
        return false;
    }
    let (pc, sp, bp) = registers();
    let (lo, hi) = (tls.stack_lo as u64, tls.stack_hi as u64);
    if sp < lo || sp >= hi {
        // Not on this thread's stack (signal alternate stack, coroutine):
        // bounds unknown, so no reads at all.
        return true;
    }
    // Reads must fit in [sp, hi): everything there is mapped (the callers'
    // frames), and nothing a correct unwind needs is outside it.
    let read_word = |addr: u64| -> Option<u64> {
        // SAFETY: in bounds of this thread's live stack, checked first.
        (addr >= sp && addr <= hi - 8).then(|| unsafe { (addr as *const u64).read_unaligned() })
    };
    // SAFETY: created by `set_up` for this thread and freed only at its exit.
    let thread = unsafe { &mut *(tls.cache as *mut ThreadUnwinder) };
    for attempt in 0..2 {
        out.len = 0;
        let memo = &mut thread.memo;
        let rules = &mut thread.rules;
        let framehop = &mut thread.framehop;
        let rescan = registry::with_snapshot(tls.slot, |snap| {
            let memo_on = MEMO.load(Ordering::Relaxed);
            // The same stack as the previous capture's, from this frame
            // outwards (a loop allocating from one place): its record is the
            // answer, and stays the previous one.
            if memo_on {
                let previous = memo.previous();
                if previous.reusable_whole(snap.generation, (pc, sp, bp), read_word) {
                    for s in &previous.steps[..previous.len] {
                        if !is_own(s.ip) && push(out, s.ip, s.sp, depth) {
                            return false;
                        }
                    }
                    if previous.complete {
                        return false;
                    }
                    // It stopped short (step limit, error): unwind afresh.
                    out.len = 0;
                }
            }
            let (previous, record) = memo.begin();
            record.reset(snap.generation);
            let rec: *mut Record = record;
            // Every word the rules read is logged: the memo's validity test.
            let mut read_stack = move |addr: u64| -> Result<u64, ()> {
                let value = read_word(addr).ok_or(())?;
                // SAFETY: `rec` is only otherwise used between unwind calls.
                unsafe { (*rec).log_read(addr, value) };
                Ok(value)
            };
            // Stepped frame by frame (not through framehop's iterator) to
            // learn each frame's stack pointer (Python frames are matched to
            // the native frames that hold their interpreter's state) and to
            // stop where the previous unwind can be reused.
            let mut regs = UnwindRegsX86_64::new(pc, sp, bp);
            let mut address = FrameAddress::InstructionPointer(pc);
            let mut cursor = 0;
            let mut reuse_checks = if memo_on { MAX_REUSE_CHECKS } else { 0 };
            let mut steps = 0;
            while steps < MAX_STEPS {
                steps += 1;
                let ip = address.address();
                // SAFETY: no unwind call is running.
                let r = unsafe { &mut *rec };
                let state = (ip, regs.sp(), regs.bp());
                let reusable = if address.is_return_address() && reuse_checks > 0 {
                    previous.reusable_from(snap.generation, state, &mut cursor, read_word)
                } else {
                    None
                };
                if let Some(j) = reusable {
                    reuse_checks = 0;
                    r.splice(previous, j);
                    for s in &previous.steps[j..previous.len] {
                        if !is_own(s.ip) && push(out, s.ip, s.sp, depth) {
                            return false;
                        }
                    }
                    if previous.complete {
                        return false;
                    }
                    // Go on from the last remembered frame, never unwound
                    // (taken from `previous`: a splice that did not fit
                    // leaves `r` unusable but the frames are still right).
                    let last = previous.steps[previous.len - 1];
                    let Some(next) = FrameAddress::from_return_address(last.ip) else {
                        return false;
                    };
                    address = next;
                    regs = UnwindRegsX86_64::new(last.ip, last.sp, last.bp);
                    steps += previous.len - j - 1;
                } else {
                    // Only a check that walked the reads counts against the
                    // budget; another caller at the same depth costs nothing.
                    if cursor < previous.len
                        && (previous.steps[cursor].ip, previous.steps[cursor].sp) == (ip, state.1)
                    {
                        reuse_checks = reuse_checks.saturating_sub(1);
                    }
                    r.push_step(ip, state.1, state.2);
                    if !is_own(ip) && push(out, ip, state.1, depth) {
                        return false;
                    }
                }
                let step = match rules.rule(snap, address.address_for_lookup()) {
                    Rule::Framehop => snap
                        .unwinder
                        .unwind_frame(address, &mut regs, framehop, &mut read_stack)
                        .map_err(|_| ()),
                    rule => rule
                        .exec(!address.is_return_address(), &mut regs, &mut read_stack)
                        .map_err(|_| ()),
                };
                // SAFETY: the unwind call has returned.
                let r = unsafe { &mut *rec };
                r.end_step(matches!(step, Ok(Some(_))).then(|| (regs.ip(), regs.bp())));
                match step {
                    Ok(Some(ra)) => match FrameAddress::from_return_address(ra) {
                        Some(next) => address = next,
                        None => return false,
                    },
                    Ok(None) => {
                        r.complete = true;
                        return false;
                    }
                    // The stack ended badly: maybe in a module loaded since the
                    // last scan (its `.eh_frame` unknown). Rescan once per set.
                    Err(_) => return !snap.contains(ip) && snap.ask_rescan(),
                }
            }
            false
        });
        if attempt > 0 || rescan != Some(true) {
            break;
        }
        // Module registration, like a thread's set-up: allocates and takes
        // the loader's lock, once per change of the loaded set at most.
        registry::refresh(Some(tls.slot));
    }
    true
}

/// The registers at this point of `capture`'s body: where the unwind starts.
///
/// Inline assembly because no safe API gives them: `lea [rip]` is the address
/// of the next instruction (inside `capture`, whose CFI then describes the
/// frame), `rsp` and `rbp` as they are there. Only these three are needed:
/// framehop's x86-64 rules recover the CFA from rsp or rbp.
#[inline(always)]
fn registers() -> (u64, u64, u64) {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, touches no memory.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    (pc, sp, bp)
}

/// A thread's first capture: stack bounds, reader slot, cache. Allocates
/// (under the guard). Returns whether the unwinder can be used.
#[cold]
#[inline(never)]
fn set_up(tls: &mut UnwindTls) -> bool {
    if tls.status != STATUS_NEW || INIT.load(Ordering::Acquire) != INIT_READY {
        return false;
    }
    tls.status = STATUS_FAILED;
    let Some((lo, hi)) = stack_bounds() else {
        return false;
    };
    let Some(slot) = registry::claim_slot(lo as u64, hi as u64) else {
        return false;
    };
    let cache = Box::into_raw(Box::new(ThreadUnwinder {
        rules: RuleTable::new(),
        framehop: Box::new(Cache::new_in()),
        memo: Memo::new_boxed(),
    }));
    // SAFETY: the key was created in `init`; the destructor gets `cache` back.
    if unsafe { libc::pthread_setspecific(CACHE_KEY, cache as *const c_void) } != 0 {
        // SAFETY: never shared.
        drop(unsafe { Box::from_raw(cache) });
        registry::release_slot(slot);
        return false;
    }
    tls.stack_lo = lo;
    tls.stack_hi = hi;
    tls.slot = slot;
    tls.cache = cache.cast();
    tls.status = STATUS_READY;
    true
}

/// This thread's stack as `[lowest, one past highest)`: the mapping that
/// holds the current stack pointer, read from `/proc/self/maps`.
///
/// Not `pthread_getattr_np`: it allocates while holding a lock of its own, so
/// when a thread's first recorded allocation comes from inside it (Rust's
/// runtime asks it for every thread's guard page), calling it again here
/// deadlocks. Reading the map takes no lock of the C library. Runs once per
/// thread, under the guard.
pub fn stack_bounds() -> Option<(usize, usize)> {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        (lo <= sp && sp < hi).then_some((lo, hi))
    })
}

/// The calling thread's stack and reader slot, as the exit leak scan needs
/// them. Runs under the guard (it may allocate to find the bounds).
pub fn current_thread() -> Option<(u64, u64, Option<u32>)> {
    // SAFETY: this thread's own TLS state.
    let tls = unsafe { &*thread_state::unwind_tls() };
    if tls.status == STATUS_READY {
        return Some((tls.stack_lo as u64, tls.stack_hi as u64, Some(tls.slot)));
    }
    stack_bounds().map(|(lo, hi)| (lo as u64, hi as u64, None))
}

/// Stacks of the other live program threads.
pub fn other_thread_stacks(own_slot: Option<u32>) -> Vec<(u64, u64)> {
    registry::thread_stacks(own_slot)
}

/// The pthread key destructor: the thread is exiting, free its cache and slot.
/// Later captures on this thread (other destructors allocating) fall back.
unsafe extern "C" fn thread_exit(cache: *mut c_void) {
    let _guard = Guard::enter();
    let tls = &mut *thread_state::unwind_tls();
    if tls.status == STATUS_READY {
        registry::release_slot(tls.slot);
    }
    tls.status = STATUS_EXITED;
    tls.cache = std::ptr::null_mut();
    drop(Box::from_raw(cache as *mut ThreadUnwinder));
}

/// `pthread_atfork` child handler: the child has only this thread.
unsafe extern "C" fn after_fork_child() {
    registry::after_fork_child(own_slot());
}

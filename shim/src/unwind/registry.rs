//! The set of loaded modules the unwinder knows, readable without a lock.
//!
//! Readers (captures, on any thread, inside `malloc`) load [`CURRENT`], an
//! immutable [`Snapshot`], and never block. Writers (the shim's set-up, the
//! `dlopen`/`dlclose` hooks) build a new snapshot copy-on-write, publish it
//! with one atomic swap, and free the old one only after a grace period:
//!
//! * Each thread that captures owns a reader slot ([`Slot`]) whose sequence
//!   number it makes odd before loading the snapshot and even again when
//!   done. A writer, after the swap, waits until every slot that was odd has
//!   moved on. Readers that loaded the old snapshot have then finished with
//!   it. (A reader whose odd store the writer's check misses loads the new
//!   pointer: the two sides' barriers are asymmetric, see [`barrier`].)
//! * Writers serialise with an atomic flag ([`WRITER`]); a forked child, whose
//!   other threads are gone, resets it and the slots (`after_fork_child`).
//!
//! Unloading is the delicate part: the real `dlclose` unmaps an object before
//! its hook can publish a set without it. So the hook first raises
//! [`CLOSING`] and publishes a set that holds only the objects that can never
//! be unloaded (those present at start-up), waits for the readers, and only
//! then calls the real `dlclose`; afterwards it lowers `CLOSING` and
//! publishes the full set again. A module that may be gone is never read.
//!
//! Loading needs no such care (a module that is not in the set yet is simply
//! not read). `dlopen` is deliberately not hooked: glibc resolves a bare name
//! through the RPATH/RUNPATH of `dlopen`'s *caller*, found from its return
//! address, which a wrapper would replace with the shim's. Instead, a
//! capture whose unwind ends at an address outside every known module asks
//! for one rescan of that snapshot (see `unwind::capture`).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use framehop::x86_64::{CacheX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder as _};

use super::barrier;
use super::elf::{self, Found, Section};

/// The unwinder over mapped section data, never allocating while it unwinds.
pub type Unwinder = UnwinderX86_64<Section, MustNotAllocateDuringUnwind>;
/// A thread's framehop cache (unwind rules by address, DWARF evaluation space).
pub type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// An immutable module set, as readers see it.
pub struct Snapshot {
    /// The framehop unwinder holding the modules.
    pub unwinder: Unwinder,
    /// Distinct for every snapshot ever published (never 0): unwinds made
    /// with another module set are not reused (see `memo`).
    pub generation: u64,
    /// The identity of each module in `unwinder` (see [`Found::key`]), to
    /// rebuild incrementally.
    keys: Vec<(u64, u64, u64)>,
    /// The modules, sorted by text start: to tell whether an address is
    /// known, and where its unwind tables are (see `rule_table`).
    modules: Vec<Found>,
    /// Set once a capture has asked for a rescan because of an address
    /// outside every module: one rescan per snapshot, so that code no module
    /// holds (JIT code) does not rescan again and again.
    rescan_asked: AtomicBool,
}

impl Snapshot {
    /// Whether `addr` lies in the text of a module of this set.
    pub fn contains(&self, addr: u64) -> bool {
        self.module_for(addr).is_some()
    }

    /// The module whose text holds `addr`.
    pub fn module_for(&self, addr: u64) -> Option<&Found> {
        let i = self.modules.partition_point(|m| m.text.start <= addr);
        let module = self.modules.get(i.checked_sub(1)?)?;
        (addr < module.text.end).then_some(module)
    }

    /// The modules, sorted by text start.
    #[cfg(test)]
    pub fn modules(&self) -> &[Found] {
        &self.modules
    }

    /// Claims this snapshot's one rescan; `true` for the first caller only.
    pub fn ask_rescan(&self) -> bool {
        !self.rescan_asked.swap(true, Ordering::Relaxed)
    }
}

/// Module key: text start, text end, `.eh_frame_hdr` address.
type Key = (u64, u64, u64);

/// Generation of the last published snapshot.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static CURRENT: AtomicPtr<Snapshot> = AtomicPtr::new(std::ptr::null_mut());
/// Held by the one thread that is replacing the snapshot.
static WRITER: AtomicBool = AtomicBool::new(false);
/// How many `dlclose` calls are in progress (see the module documentation).
static CLOSING: AtomicUsize = AtomicUsize::new(0);
/// The objects present when the shim started: they are never unloaded.
static INITIAL: OnceLock<Vec<Key>> = OnceLock::new();

/// How many threads can have a reader slot at once; later threads fall back
/// to the libgcc unwinder until a slot frees up.
pub const SLOTS: usize = 1024;

/// One thread's reader slot, on a cache line of its own.
#[repr(align(64))]
struct Slot {
    /// Whether a live thread owns the slot.
    owned: AtomicBool,
    /// Odd while its thread is using a snapshot.
    seq: AtomicU64,
    /// Its thread's stack, `[lo, hi)`: a root of the exit leak scan.
    stack_lo: AtomicU64,
    stack_hi: AtomicU64,
}

static READERS: [Slot; SLOTS] = [const {
    Slot {
        owned: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        stack_lo: AtomicU64::new(0),
        stack_hi: AtomicU64::new(0),
    }
}; SLOTS];

/// One past the highest slot ever claimed. Walks over the slots stop
/// there: the table is 64 KiB, and reading (or, after `fork`, writing) the
/// pages no thread ever used cost a page fault each, in every process.
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// The slots that were ever claimed (a thread claims one before it reads a
/// snapshot, so a walk that starts after a snapshot was replaced sees every
/// slot that may read the old one).
fn claimed() -> &'static [Slot] {
    &READERS[..CLAIMED.load(Ordering::SeqCst)]
}

/// Claims a free reader slot for the calling thread, whose stack is `[lo, hi)`.
pub fn claim_slot(lo: u64, hi: u64) -> Option<u32> {
    let i = READERS.iter().position(|s| {
        s.owned
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    CLAIMED.fetch_max(i + 1, Ordering::SeqCst);
    READERS[i].stack_lo.store(lo, Ordering::Relaxed);
    READERS[i].stack_hi.store(hi, Ordering::Release);
    Some(i as u32)
}

/// The stacks of the live threads that own a slot (every program thread that
/// has recorded a call), except slot `except`.
pub fn thread_stacks(except: Option<u32>) -> Vec<(u64, u64)> {
    claimed()
        .iter()
        .enumerate()
        .filter(|(i, s)| Some(*i as u32) != except && s.owned.load(Ordering::Acquire))
        .map(|(_, s)| {
            (
                s.stack_lo.load(Ordering::Relaxed),
                s.stack_hi.load(Ordering::Acquire),
            )
        })
        .filter(|&(lo, hi)| lo < hi)
        .collect()
}

/// Gives a slot back (its thread is exiting and not reading).
pub fn release_slot(slot: u32) {
    if let Some(s) = READERS.get(slot as usize) {
        s.owned.store(false, Ordering::Release);
    }
}

/// Runs `f` on the current snapshot, if there is one. Never blocks.
///
/// `slot` must be the calling thread's own slot.
#[inline(always)]
pub fn with_snapshot<R>(slot: u32, f: impl FnOnce(&Snapshot) -> R) -> Option<R> {
    let s = &READERS[slot as usize];
    let seq = s.seq.load(Ordering::Relaxed);
    // The snapshot load below cannot be seen before this store by a writer
    // checking the slot (see `barrier`).
    barrier::mark_reading(&s.seq, seq | 1);
    let snap = CURRENT.load(Ordering::SeqCst);
    // SAFETY: a published snapshot is freed only after every reader that
    // could have loaded it has made its slot's sequence move on.
    let out = unsafe { snap.as_ref() }.map(f);
    s.seq.store((seq | 1) + 1, Ordering::Release);
    out
}

/// Waits until every slot that was mid-read has moved on, so that no reader
/// still holds the snapshot replaced just before. Returns `false` if the
/// calling thread's own slot is mid-read (a signal handler interrupted its
/// capture): the old snapshot must then be leaked, not freed.
fn wait_for_readers(own: Option<u32>) -> bool {
    let mut own_idle = true;
    for (i, s) in claimed().iter().enumerate() {
        let seq = s.seq.load(Ordering::SeqCst);
        if seq & 1 == 0 {
            continue;
        }
        if Some(i as u32) == own {
            own_idle = false;
            continue;
        }
        let mut spins = 0u32;
        while s.seq.load(Ordering::SeqCst) == seq {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                // A reader that was preempted: let it run. (Writer side only.)
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    own_idle
}

/// Builds `Module`s for framehop from what `elf::scan` found.
fn module(f: &Found) -> Module<Section> {
    let svma = |addr: u64, len: usize| Some(addr - f.base..addr - f.base + len as u64);
    Module::new(
        String::new(),
        f.text.clone(),
        f.base,
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(f.text.start - f.base..f.text.end - f.base),
            eh_frame_svma: svma(f.eh_frame_addr, f.eh_frame.len()),
            eh_frame: Some(f.eh_frame),
            eh_frame_hdr_svma: svma(f.eh_frame_hdr_addr, f.eh_frame_hdr.len()),
            eh_frame_hdr: Some(f.eh_frame_hdr),
            ..Default::default()
        },
    )
}

/// Brings the published module set up to date with what is loaded now.
///
/// Call with the thread's guard held (it allocates, and `dl_iterate_phdr`
/// takes the loader's lock): at start-up and from the `dlopen`/`dlclose`
/// hooks, never from a capture. `own` is the caller's reader slot, if any.
pub fn refresh(own: Option<u32>) {
    acquire_writer();
    let mut found = elf::scan();
    let initial = INITIAL.get_or_init(|| found.iter().map(Found::key).collect());
    if CLOSING.load(Ordering::SeqCst) != 0 {
        // A dlclose is in progress: only objects that cannot go away.
        found.retain(|f| initial.contains(&f.key()));
    }
    let old = CURRENT.load(Ordering::Acquire);
    // SAFETY: only writers replace or free snapshots, and we hold the flag.
    let old_ref = unsafe { old.as_ref() };
    let new_keys: Vec<Key> = found.iter().map(Found::key).collect();
    if old_ref.is_some_and(|o| o.keys == new_keys) {
        release_writer();
        return;
    }
    // Copy-on-write: keep the modules that stay (their parsed data is shared),
    // drop the ones that went, add the new ones.
    let mut unwinder = old_ref.map_or_else(Unwinder::new, |o| o.unwinder.clone());
    if let Some(o) = old_ref {
        for key in o.keys.iter().filter(|k| !new_keys.contains(k)) {
            unwinder.remove_module(key.0);
        }
    }
    for f in &found {
        if !old_ref.is_some_and(|o| o.keys.contains(&f.key())) {
            unwinder.add_module(module(f));
        }
    }
    found.sort_unstable_by_key(|f| f.text.start);
    let new = Box::into_raw(Box::new(Snapshot {
        unwinder,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed) + 1,
        keys: new_keys,
        modules: found,
        rescan_asked: AtomicBool::new(false),
    }));
    let old = CURRENT.swap(new, Ordering::SeqCst);
    if !old.is_null() && barrier::after_publish() && wait_for_readers(own) {
        // SAFETY: unpublished, and no reader holds it any more.
        drop(unsafe { Box::from_raw(old) });
    }
    release_writer();
}

/// Before the real `dlclose`: publish a set without any unloadable object.
pub fn begin_close(own: Option<u32>) {
    CLOSING.fetch_add(1, Ordering::SeqCst);
    refresh(own);
}

/// After the real `dlclose`: publish what is loaded now.
pub fn end_close(own: Option<u32>) {
    CLOSING.fetch_sub(1, Ordering::SeqCst);
    refresh(own);
}

fn acquire_writer() {
    while WRITER
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: sched_yield has no preconditions. (Writers only: never in a capture.)
        unsafe { libc::sched_yield() };
    }
}

fn release_writer() {
    WRITER.store(false, Ordering::Release);
}

/// In a forked child: the other threads are gone, so are their reads, their
/// slots, their `dlclose` calls and any writer among them.
pub fn after_fork_child(own: Option<u32>) {
    barrier::register();
    for (i, s) in claimed().iter().enumerate() {
        if Some(i as u32) != own {
            s.owned.store(false, Ordering::Relaxed);
        }
        s.seq.store(0, Ordering::Relaxed);
    }
    CLOSING.store(0, Ordering::Relaxed);
    WRITER.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::first_touch::thread_minor_faults;

    #[test]
    fn walks_stop_at_the_highest_slot_ever_claimed() {
        let slot = claim_slot(0x1000, 0x2000).expect("a free slot");
        assert!(CLAIMED.load(Ordering::SeqCst) > slot as usize);
        // The first walk reads only the claimed slots' pages: each page of
        // the 64 KiB table beyond them would cost a fault.
        let before = thread_minor_faults();
        let stacks = thread_stacks(None);
        assert!(
            thread_minor_faults() - before <= 1,
            "the walk read never-claimed slots"
        );
        assert!(stacks.contains(&(0x1000, 0x2000)));
        assert!(!thread_stacks(Some(slot)).contains(&(0x1000, 0x2000)));
        release_slot(slot);
        assert!(!thread_stacks(None).contains(&(0x1000, 0x2000)));
    }
}

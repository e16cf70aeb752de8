//! The addresses of sampled blocks still live, so that when sampling only
//! their frees are recorded.
//!
//! Every `free` asks this set, so the usual answer ("not sampled") must cost
//! one load from a small, cache-resident table. Addresses hash to buckets of
//! [`SLOTS_PER_BUCKET`] slots (one cache line); beside the slots, one byte
//! per bucket counts its members, and one byte per group of
//! [`BUCKETS_PER_GROUP`] neighbouring buckets counts the group's. `free`
//! reads the group count, from a table of 8 KiB that stays in the nearest
//! caches of a program whose own data is large (the 64 KiB of bucket counts,
//! read at random, missed them: `free` then cost cc1 twice as much); a zero
//! answers at once. Otherwise the bucket's count is read, and only a bucket
//! that holds sampled blocks is searched.
//!
//! Buckets never spill into their neighbours, so a removal simply empties its
//! slot: there are no tombstones to pile up over a long run, and lookups stay
//! as short as on the first day. A full bucket (more than eight live sampled
//! blocks hashing together, which takes hundreds of thousands of them) marks
//! itself *overflowed* for good; the set then answers "unknown" for that
//! bucket's misses, and those frees are recorded (the collector ignores frees
//! of blocks it never saw), so overflow costs speed, never correctness.
//!
//! All operations are lock-free atomics. Live addresses are unique, so two
//! threads never race on one address: the insert happens before `malloc`
//! returns it, the removal before `free` hands it back.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

use crate::errno;
use crate::first_touch::FirstTouch;

/// log2 of the number of buckets.
const BUCKET_BITS: u32 = 16;
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Neighbouring buckets that share one group count.
pub const BUCKETS_PER_GROUP: usize = 8;
const GROUPS: usize = BUCKETS / BUCKETS_PER_GROUP;
/// Slots per bucket: eight 8-byte addresses, one cache line.
pub const SLOTS_PER_BUCKET: usize = 8;
const EMPTY: u64 = 0;
/// Set in a bucket's count byte, and in its group's, once an insert found
/// the bucket full (a group counts at most 64 members, below this bit).
const OVERFLOWED: u8 = 0x80;

/// What the set knows of an address.
#[derive(Debug, PartialEq, Eq)]
pub enum Membership {
    /// It was sampled (and is now removed).
    Sampled,
    /// It was not sampled.
    NotSampled,
    /// The set cannot tell (its bucket overflowed): treat as sampled.
    Unknown,
}

/// Words of the slots' page bitmap: one bit per 4 KiB page of their 4 MiB.
const SLOT_PAGE_WORDS: usize = BUCKETS * SLOTS_PER_BUCKET * 8 / 4096 / 64;

/// A lock-free set of sampled block addresses (see the module docs).
pub struct SampledSet {
    slots: *const AtomicU64,
    counts: *const AtomicU8,
    groups: *const AtomicU8,
    /// Which pages of slots were written: a new page is written before it
    /// is read (see [`FirstTouch`]).
    slot_pages: FirstTouch<SLOT_PAGE_WORDS>,
}

// SAFETY: the table is atomics in a mapping that lives as long as the process.
unsafe impl Sync for SampledSet {}
unsafe impl Send for SampledSet {}

static GLOBAL: AtomicPtr<SampledSet> = AtomicPtr::new(std::ptr::null_mut());
/// The installed set's group counts, for [`surely_unsampled`]: one load
/// fewer on every `free` than going through [`GLOBAL`].
static GLOBAL_GROUPS: AtomicPtr<AtomicU8> = AtomicPtr::new(std::ptr::null_mut());

/// Group counts that say "no sampled block anywhere": see [`no_frees_to_record`].
static NO_SAMPLES: [AtomicU8; GROUPS] = [const { AtomicU8::new(0) }; GROUPS];

/// Makes [`surely_unsampled`] true for every address: for when nothing is
/// recorded any more, so that every `free` takes its fast path. The set
/// itself, if any, stays installed (a thread may be using it).
pub fn no_frees_to_record() {
    GLOBAL_GROUPS.store(NO_SAMPLES.as_ptr().cast_mut(), Ordering::Release);
}

/// The fast test of `free`: true if sampling is on and `addr` is surely not
/// a sampled block (its bucket's group is empty), or if nothing is recorded
/// any more. False in exact mode.
#[inline(always)]
pub fn surely_unsampled(addr: u64) -> bool {
    let groups = GLOBAL_GROUPS.load(Ordering::Acquire);
    // SAFETY: an installed set is never freed; the group is < GROUPS.
    !groups.is_null()
        && unsafe {
            (*groups.add(SampledSet::group(SampledSet::bucket(addr)))).load(Ordering::Acquire)
        } == 0
}

impl SampledSet {
    /// Maps the table: 4 MiB of slots, in address space reserved without
    /// backing and touched as used; 64 KiB of bucket counts, touched as
    /// used too (a bucket's count is read only once an insert into its
    /// group wrote it, and a group's eight counts share a page); and 8 KiB
    /// of group counts, backed at once where the kernel can (every `free`
    /// reads them, so a page left to the first read would be the shared zero
    /// page, which the first insert then replaces at the cost of a TLB
    /// shootdown, see [`FirstTouch`]). Runs under the guard.
    pub fn new() -> Option<SampledSet> {
        let slot_bytes = BUCKETS * SLOTS_PER_BUCKET * 8;
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                slot_bytes + BUCKETS + GROUPS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the counts follow the slots, the group counts the bucket
        // counts, inside the mapping.
        let (counts, groups) = unsafe {
            let counts = p.cast::<u8>().add(slot_bytes);
            (counts, counts.add(BUCKETS))
        };
        // SAFETY: populates (zeroed, writable) pages of this mapping only.
        // Kernels before 5.14 refuse (EINVAL, not left in the program's
        // errno); their pages are touched as used.
        errno::preserved(|| unsafe {
            libc::madvise(groups.cast(), GROUPS, libc::MADV_POPULATE_WRITE)
        });
        Some(SampledSet {
            slots: p.cast(),
            counts: counts.cast(),
            groups: groups.cast(),
            slot_pages: FirstTouch::new(),
        })
    }

    /// Makes `set` the process's set (it lives until the process ends).
    pub fn install(set: SampledSet) {
        GLOBAL_GROUPS.store(set.groups.cast_mut(), Ordering::Release);
        GLOBAL.store(Box::into_raw(Box::new(set)), Ordering::Release);
    }

    /// The process's set, when sampling is on.
    #[inline(always)]
    pub fn global() -> Option<&'static SampledSet> {
        // SAFETY: an installed set is never freed.
        unsafe { GLOBAL.load(Ordering::Acquire).as_ref() }
    }

    #[inline(always)]
    fn bucket(addr: u64) -> usize {
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKET_BITS)) as usize
    }

    #[inline(always)]
    fn group(bucket: usize) -> usize {
        bucket / BUCKETS_PER_GROUP
    }

    #[inline(always)]
    fn count(&self, bucket: usize) -> &AtomicU8 {
        // SAFETY: `bucket` < BUCKETS, inside the counts.
        unsafe { &*self.counts.add(bucket) }
    }

    /// The count of `bucket`'s group.
    #[inline(always)]
    fn group_count(&self, bucket: usize) -> &AtomicU8 {
        // SAFETY: `bucket` < BUCKETS, so its group is < GROUPS, inside the group counts.
        unsafe { &*self.groups.add(Self::group(bucket)) }
    }

    #[inline(always)]
    fn slot(&self, bucket: usize, i: usize) -> &AtomicU64 {
        // SAFETY: `bucket` < BUCKETS and `i` < SLOTS_PER_BUCKET, inside the slots.
        unsafe { &*self.slots.add(bucket * SLOTS_PER_BUCKET + i) }
    }

    /// True if `addr` is surely not in the set (what [`surely_unsampled`]
    /// asks of the installed set).
    #[cfg(test)]
    pub fn surely_absent(&self, addr: u64) -> bool {
        self.group_count(Self::bucket(addr)).load(Ordering::Acquire) == 0
    }

    /// Adds a sampled address; returns `false` if its bucket was full.
    pub fn insert(&self, addr: u64) -> bool {
        let bucket = Self::bucket(addr);
        for i in 0..SLOTS_PER_BUCKET {
            let cell = self.slot(bucket, i);
            self.slot_pages
                .before_read(cell, (bucket * SLOTS_PER_BUCKET + i) * 8);
            if cell.load(Ordering::Relaxed) == EMPTY
                && cell
                    .compare_exchange(EMPTY, addr, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                // Both counts rise before `malloc` returns the address,
                // so no `free` of it can find either at zero.
                self.count(bucket).fetch_add(1, Ordering::AcqRel);
                self.group_count(bucket).fetch_add(1, Ordering::AcqRel);
                return true;
            }
        }
        self.count(bucket).fetch_or(OVERFLOWED, Ordering::AcqRel);
        self.group_count(bucket)
            .fetch_or(OVERFLOWED, Ordering::AcqRel);
        false
    }

    /// Removes `addr` if present.
    pub fn remove(&self, addr: u64) -> Membership {
        let bucket = Self::bucket(addr);
        let count = self.count(bucket).load(Ordering::Acquire);
        if count == 0 {
            return Membership::NotSampled;
        }
        for i in 0..SLOTS_PER_BUCKET {
            let cell = self.slot(bucket, i);
            if cell.load(Ordering::Acquire) == addr {
                cell.store(EMPTY, Ordering::Release);
                self.count(bucket).fetch_sub(1, Ordering::AcqRel);
                self.group_count(bucket).fetch_sub(1, Ordering::AcqRel);
                return Membership::Sampled;
            }
        }
        if count & OVERFLOWED != 0 {
            Membership::Unknown
        } else {
            Membership::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::first_touch::thread_minor_faults;

    /// `n` distinct addresses that all hash to `bucket`.
    fn colliding(bucket: usize, n: usize) -> Vec<u64> {
        (1u64..)
            .map(|i| i * 16)
            .filter(|&a| SampledSet::bucket(a) == bucket)
            .take(n)
            .collect()
    }

    #[test]
    fn group_counts_are_backed_and_a_new_page_costs_one_fault() {
        const PAGES: usize = 100;
        let set = SampledSet::new().unwrap();
        // One address per page of slots (64 buckets of 64 bytes per page).
        let buckets: Vec<usize> = (0..PAGES).map(|p| p * 64 * 7).collect();
        let addrs: Vec<u64> = buckets.iter().map(|&b| colliding(b, 1)[0]).collect();
        // The pages of bucket counts the inserts write (first written, never first read).
        let count_pages = buckets.last().unwrap() / 4096 + 1;
        let before = thread_minor_faults();
        // Every page of group counts read, as frees do: already backed.
        assert!((0..BUCKETS).all(|b| set.group_count(b).load(Ordering::Relaxed) == 0));
        // Unbacked, their two pages would fault in as the zero page; one
        // fault is left for this test's own code page, first run here.
        let read_faults = thread_minor_faults() - before;
        assert!(
            read_faults <= 1,
            "group counts were not backed: {read_faults} faults"
        );
        assert!(addrs.iter().all(|&a| set.insert(a)));
        let faults = thread_minor_faults() - before;
        // Reading then claiming a page would fault twice, and a group page
        // read before it was backed would fault again when first counted in.
        assert!(
            faults <= (PAGES + count_pages) as i64 + 10,
            "{faults} faults for {PAGES} new pages of slots and {count_pages} of counts"
        );
        assert!(addrs.iter().all(|&a| set.remove(a) == Membership::Sampled));
    }

    #[test]
    fn members_are_found_once_and_others_never() {
        let set = SampledSet::new().unwrap();
        let addrs: Vec<u64> = (1..=5000u64).map(|i| 0x5555_0000_0000 + i * 48).collect();
        for &a in &addrs {
            assert!(set.insert(a));
        }
        for &a in &addrs {
            assert!(!set.surely_absent(a));
            assert_eq!(set.remove(a), Membership::Sampled);
            assert_eq!(set.remove(a), Membership::NotSampled);
        }
        // Every bucket and group is empty again: the fast test answers for all.
        assert!((0..BUCKETS).all(|b| set.count(b).load(Ordering::Relaxed) == 0));
        assert!((0..BUCKETS).all(|b| set.group_count(b).load(Ordering::Relaxed) == 0));
        assert!(addrs.iter().all(|&a| set.surely_absent(a)));
    }

    #[test]
    fn a_full_bucket_answers_unknown_for_misses_but_finds_members() {
        let set = SampledSet::new().unwrap();
        let addrs = colliding(7, SLOTS_PER_BUCKET + 2);
        for &a in &addrs[..SLOTS_PER_BUCKET] {
            assert!(set.insert(a));
        }
        assert!(!set.insert(addrs[SLOTS_PER_BUCKET]));
        assert_eq!(set.remove(addrs[3]), Membership::Sampled);
        // The address that did not fit, and one never inserted: unknown.
        assert_eq!(set.remove(addrs[SLOTS_PER_BUCKET]), Membership::Unknown);
        assert_eq!(set.remove(addrs[SLOTS_PER_BUCKET + 1]), Membership::Unknown);
        // The freed slot takes a new member.
        assert!(set.insert(addrs[SLOTS_PER_BUCKET + 1]));
        assert_eq!(set.remove(addrs[SLOTS_PER_BUCKET + 1]), Membership::Sampled);
        // Emptied, the bucket and its group still send frees to the search.
        for &a in addrs
            .iter()
            .take(SLOTS_PER_BUCKET)
            .filter(|&&a| a != addrs[3])
        {
            assert_eq!(set.remove(a), Membership::Sampled);
        }
        assert_eq!(set.count(7).load(Ordering::Relaxed), OVERFLOWED);
        assert!(!set.surely_absent(colliding(0, 1)[0]));
    }

    #[test]
    fn a_group_is_empty_only_when_all_its_buckets_are() {
        let set = SampledSet::new().unwrap();
        // Buckets 16 and 17 share group 2; bucket 24 is in group 3.
        let (a, b, other) = (
            colliding(16, 1)[0],
            colliding(17, 1)[0],
            colliding(24, 1)[0],
        );
        assert!(set.insert(a));
        // A neighbour in the group is sent to the search, which tells it apart.
        assert!(!set.surely_absent(b));
        assert_eq!(set.remove(b), Membership::NotSampled);
        assert!(set.surely_absent(other));
        assert!(set.insert(b));
        assert_eq!(set.remove(a), Membership::Sampled);
        // `b` still holds the group: its free must not take the fast path.
        assert!(!set.surely_absent(b));
        assert_eq!(set.remove(b), Membership::Sampled);
        assert!(set.surely_absent(a) && set.surely_absent(b));
    }

    #[test]
    fn removals_leave_no_residue_over_a_long_run() {
        // With tombstones, a million insert/remove rounds over random
        // addresses would fill the table; here every bucket ends empty.
        let set = SampledSet::new().unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = x & !15;
            if a == EMPTY {
                continue;
            }
            assert!(set.insert(a));
            assert_eq!(set.remove(a), Membership::Sampled);
        }
        assert!((0..BUCKETS).all(|b| set.count(b).load(Ordering::Relaxed) == 0));
    }
}

//! A thread's framehop rule caches: one at first, several once the thread
//! has unwound a lot.
//!
//! framehop keeps the unwind rules it derived from `.eh_frame` in a cache of
//! a fixed 509 entries, direct-mapped by address (`address % 509`). A
//! program with more code than that on its allocation paths (cc1 calls
//! `malloc` from thousands of places, tens of frames deep) evicts rules it
//! needs again, and framehop derives them again: looking up the FDE and
//! running its CFI program with gimli was a third of the shim's time in cc1.
//! The size is a constant inside framehop, so a busy thread gets
//! [`PARTS`] caches instead, each given the addresses of its own share
//! (`address / 509 % PARTS`): together a direct-mapped cache of
//! `509 * PARTS` entries with the same index function. Sound for the same
//! reason one cache is: each cache only ever answers for addresses whose
//! rules it derived itself, under the same module generation.
//!
//! A thread pays for the others (about 40 KiB each: the rules and gimli's
//! evaluation space) only after [`GROW_AFTER`] frames unwound by framehop,
//! so that the many threads of a pool that seldom allocate stay small.

use framehop::FrameAddress;

use super::registry::Cache;

/// framehop's rule cache size (`CACHE_ENTRY_COUNT` in framehop 0.16).
const FRAMEHOP_ENTRIES: u64 = 509;
/// Caches of a thread that unwinds a lot.
pub const PARTS: usize = 8;
/// Frames a thread unwinds with framehop before it gets all [`PARTS`] caches.
pub const GROW_AFTER: u32 = 4096;

/// One thread's rule caches (see the module docs).
pub struct RuleCaches {
    first: Cache,
    more: Option<Box<[Cache; PARTS - 1]>>,
    unwound: u32,
}

impl RuleCaches {
    /// One cache; the others come with use. Allocates.
    pub fn new() -> RuleCaches {
        RuleCaches {
            first: Cache::new_in(),
            more: None,
            unwound: 0,
        }
    }

    /// The cache that holds `address`'s rule. Allocates the other caches
    /// the first time the thread has unwound [`GROW_AFTER`] frames: call
    /// only where allocating is allowed (in a capture, under the guard).
    #[inline(always)]
    pub fn for_address(&mut self, address: FrameAddress) -> &mut Cache {
        if self.more.is_none() {
            self.unwound += 1;
            if self.unwound < GROW_AFTER {
                return &mut self.first;
            }
            self.more = Some(Box::new(std::array::from_fn(|_| Cache::new_in())));
        }
        let part = (address.address_for_lookup() / FRAMEHOP_ENTRIES % PARTS as u64) as usize;
        match (part, self.more.as_deref_mut()) {
            (0, _) | (_, None) => &mut self.first,
            (k, Some(more)) => &mut more[k - 1],
        }
    }

    /// Whether the thread has all its caches.
    #[cfg(test)]
    pub fn grown(&self) -> bool {
        self.more.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: u64) -> FrameAddress {
        FrameAddress::from_instruction_pointer(a)
    }

    #[test]
    fn one_cache_until_grown_then_a_share_each() {
        let mut caches = RuleCaches::new();
        let first: *const Cache = &caches.first;
        for i in 0..GROW_AFTER - 1 {
            assert!(std::ptr::eq(
                caches.for_address(addr(u64::from(i) * 4099)),
                first
            ));
        }
        assert!(!caches.grown());
        caches.for_address(addr(0x1000));
        assert!(caches.grown());
        // Addresses one framehop cache apart land in consecutive caches, and
        // the same address always in the same one.
        let base = 0x40_0000 * FRAMEHOP_ENTRIES;
        let picked: Vec<*const Cache> = (0..PARTS as u64)
            .map(|k| caches.for_address(addr(base + k * FRAMEHOP_ENTRIES)) as *const Cache)
            .collect();
        for (i, p) in picked.iter().enumerate() {
            assert!(picked[..i].iter().all(|q| q != p), "part {i} shared");
            let again =
                caches.for_address(addr(base + i as u64 * FRAMEHOP_ENTRIES)) as *const Cache;
            assert_eq!(again, *p);
        }
        assert_eq!(picked[0], first);
    }
}

//! Writing to each page of a lazily backed table before reading it.
//!
//! The shim's tables ([`crate::stack::SeenSet`], the sampled set) are large
//! anonymous mappings whose pages are backed only as they are used. A page's
//! first access decides what it costs:
//!
//! * a *read* maps the kernel's shared zero page, and the first *write* after
//!   it must replace that mapping, which flushes the page from the TLB of
//!   every CPU the process runs on: an inter-processor interrupt, on a
//!   virtual machine a trip through the hypervisor, and the sender thread is
//!   always on another CPU;
//! * a *write* simply maps a fresh zeroed page.
//!
//! A hash table reads a slot before it claims it, so every new page took the
//! expensive path: in gcc's `cc1` (6,500 distinct stacks scattered over the
//! 8 MiB interning table) those shootdowns were 7% of the profile samples of
//! the compiler's process under the shim.
//! A bitmap of the pages already touched lets a lookup write first (an atomic
//! compare-and-swap of 0 with 0, which changes nothing) when its page is new, at the price
//! of one cached load when it is not.

use std::sync::atomic::{AtomicU64, Ordering};

/// The page size assumed for the bitmap. A larger real page only means more
/// (harmless) first writes; a smaller one does not exist on Linux.
const PAGE: usize = 4096;

/// One bit per page of a table of up to `WORDS * 64` pages.
pub struct FirstTouch<const WORDS: usize> {
    touched: [AtomicU64; WORDS],
}

impl<const WORDS: usize> FirstTouch<WORDS> {
    /// A bitmap with no page touched.
    pub const fn new() -> Self {
        FirstTouch {
            touched: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// Makes sure the page of `cell` (at byte `offset` of the table) was
    /// first written, not read. Call before reading `cell`.
    #[inline(always)]
    pub fn before_read(&self, cell: &AtomicU64, offset: usize) {
        let page = offset / PAGE;
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        let Some(bits) = self.touched.get(word) else {
            return;
        };
        if bits.load(Ordering::Relaxed) & bit == 0 {
            self.first_write(cell, bits, bit);
        }
    }

    #[cold]
    #[inline(never)]
    fn first_write(&self, cell: &AtomicU64, bits: &AtomicU64, bit: u64) {
        // A write access that leaves the value as it is, whatever another
        // thread stores there meanwhile (a failed x86 `cmpxchg` still writes
        // its operand back). Not `fetch_or(0)`: LLVM turns that idempotent
        // operation into a plain load.
        let _ = cell.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
        bits.fetch_or(bit, Ordering::Relaxed);
    }

    /// Forgets every page (after the table's pages were dropped).
    pub fn reset(&self) {
        for bits in &self.touched {
            bits.store(0, Ordering::Relaxed);
        }
    }
}

/// Minor page faults taken by the calling thread so far: what the tests of
/// the tables that use [`FirstTouch`] count.
#[cfg(test)]
pub fn thread_minor_faults() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage.ru_minflt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_is_marked_once_and_values_are_kept() {
        let table: Vec<AtomicU64> = (0..2048).map(AtomicU64::new).collect();
        let touch = FirstTouch::<1>::new();
        touch.before_read(&table[5], 5 * 8);
        assert_eq!(touch.touched[0].load(Ordering::Relaxed), 0b1);
        touch.before_read(&table[600], 600 * 8);
        assert_eq!(touch.touched[0].load(Ordering::Relaxed), 0b11);
        assert!(table
            .iter()
            .enumerate()
            .all(|(i, c)| c.load(Ordering::Relaxed) == i as u64));
        // Beyond the bitmap: nothing marked, nothing out of bounds.
        touch.before_read(&table[0], 64 * PAGE);
        assert_eq!(touch.touched[0].load(Ordering::Relaxed), 0b11);
        touch.reset();
        assert_eq!(touch.touched[0].load(Ordering::Relaxed), 0);
    }
}

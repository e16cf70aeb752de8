//! Reachability of the live blocks, by memcheck's rules.
//!
//! 1. From the roots, a pointer to a block's start makes it *reachable*; an
//!    interior pointer (not matching a [`heuristics`] rule) only *possibly*
//!    reachable. A block reached from a possibly-reachable block is at best
//!    possibly reachable. Blocks are scanned as they are reached (work list).
//!    One kind of interior pointer is ignored: one to the last word of a
//!    block's usable area, where glibc's header of the *next* chunk begins.
//!    The allocator's own state (its top chunk, stale chunk pointers left on
//!    the stack by its frames) points there; memcheck replaces the allocator
//!    and never sees those pointers, so counting them would turn definite
//!    leaks into possible ones.
//! 2. What is left is lost. Taking lost blocks in address order, each one
//!    still unreached leads a "clique": every unreached block it reaches is
//!    *indirectly* lost, the leader *definitely* lost (a leader reached by a
//!    later clique becomes indirect, as in memcheck).

use memshim_proto::{LeakClass, LiveBlock};

use super::heuristics::{self, ReadOnlyRanges};
use super::memory;
use super::page_filter::PageFilter;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Unreached,
    Possible,
    Reachable,
    Indirect,
}

/// The live blocks being classified, sorted by address.
pub struct Reach<'a> {
    blocks: &'a [LiveBlock],
    state: Vec<State>,
    work: Vec<usize>,
    lo: u64,
    hi: u64,
    /// Rules out most candidate pointers before the binary search, where
    /// the blocks lie sparse in their span.
    pages: Option<PageFilter>,
    vtables: ReadOnlyRanges,
    buf: Vec<u8>,
    windows: memory::Windows,
    /// Bytes of heap blocks read.
    pub heap_bytes: u64,
    /// Bytes of roots read.
    pub root_bytes: u64,
}

impl<'a> Reach<'a> {
    /// Prepares the scan of `blocks` (ascending addresses).
    pub fn new(blocks: &'a [LiveBlock]) -> Reach<'a> {
        let lo = blocks.first().map_or(0, |b| b.addr);
        let hi = blocks
            .iter()
            .map(|b| b.addr + b.size.max(1))
            .max()
            .unwrap_or(0);
        Reach {
            blocks,
            state: vec![State::Unreached; blocks.len()],
            work: Vec::new(),
            lo,
            hi,
            pages: PageFilter::for_sparse(blocks, lo, hi),
            vtables: ReadOnlyRanges::load(),
            buf: Vec::new(),
            windows: memory::Windows::default(),
            heap_bytes: 0,
            root_bytes: 0,
        }
    }

    /// The block `ptr` points into, and whether it points at its start.
    /// A zero-sized block is pointed at only by its own address.
    fn find(&self, ptr: u64) -> Option<(usize, bool)> {
        if ptr < self.lo || ptr >= self.hi || self.pages.as_ref().is_some_and(|p| !p.may_hold(ptr))
        {
            return None;
        }
        let i = self
            .blocks
            .partition_point(|b| b.addr <= ptr)
            .checked_sub(1)?;
        let b = self.blocks[i];
        if ptr == b.addr {
            Some((i, true))
        } else {
            (ptr < b.addr + b.size).then_some((i, false))
        }
    }

    /// A pointer found in memory reached definitely (`definite`) or possibly.
    fn reached(&mut self, ptr: u64, definite: bool) {
        let Some((i, start)) = self.find(ptr) else {
            return;
        };
        let b = self.blocks[i];
        if !start && b.usable >= 16 && ptr == b.addr + b.usable - 8 {
            return;
        }
        // Nothing this pointer could add (the heuristics below read memory).
        let known = self.state[i];
        if known == State::Reachable || (!definite && known != State::Unreached) {
            return;
        }
        let as_start = start || {
            let windows = &mut self.windows;
            heuristics::matches(ptr, b.addr, b.size, &self.vtables, |a| windows.word(a))
        };
        if as_start && definite {
            if self.state[i] != State::Reachable {
                self.state[i] = State::Reachable;
                self.work.push(i);
            }
        } else if self.state[i] == State::Unreached {
            self.state[i] = State::Possible;
            self.work.push(i);
        }
    }

    /// Scans a root range for pointers to blocks, and everything they reach.
    pub fn scan_root(&mut self, start: u64, end: u64) {
        let mut found = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        let (lo, hi) = (self.lo, self.hi);
        self.root_bytes += memory::for_each_word(start, end, &mut buf, |w| {
            if (lo..hi).contains(&w) {
                found.push(w);
            }
        });
        self.buf = buf;
        for w in found {
            self.reached(w, true);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(i) = self.work.pop() {
            let definite = self.state[i] == State::Reachable;
            for w in self.pointers_in(i) {
                self.reached(w, definite);
            }
        }
    }

    /// Candidate pointers (words inside the blocks' span) held by block `i`.
    fn pointers_in(&mut self, i: usize) -> Vec<u64> {
        let b = self.blocks[i];
        let mut found = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        let (lo, hi) = (self.lo, self.hi);
        self.heap_bytes += self.windows.for_each_word(b.addr, b.size, &mut buf, |w| {
            if (lo..hi).contains(&w) {
                found.push(w);
            }
        });
        self.buf = buf;
        found
    }

    /// Forms the cliques of lost blocks and returns every block's class.
    pub fn finish(mut self) -> Vec<LeakClass> {
        for leader in 0..self.blocks.len() {
            if self.state[leader] != State::Unreached {
                continue;
            }
            self.work.push(leader);
            while let Some(i) = self.work.pop() {
                for w in self.pointers_in(i) {
                    let Some((j, _)) = self.find(w) else { continue };
                    if j != leader && self.state[j] == State::Unreached {
                        self.state[j] = State::Indirect;
                        self.work.push(j);
                    }
                }
            }
        }
        self.state
            .iter()
            .map(|s| match s {
                State::Reachable => LeakClass::Reachable,
                State::Possible => LeakClass::Possibly,
                State::Indirect => LeakClass::Indirectly,
                State::Unreached => LeakClass::Definitely,
            })
            .collect()
    }
}

//! Leak classes of the blocks still live at exit.
//!
//! When a process exits normally the shim asks for its live set
//! ([`memshim_proto::Event::ScanRequest`]), scans its own memory for pointers
//! to those blocks, and answers with one [`LeakClass`] per block, in the order
//! the collector sent them. This module keeps that order and the answer.

use memshim_proto::{LeakClass, LeakScan, LiveBlock, LiveSet};

use super::live::LiveBlock as HeapBlock;

/// The exit scan of one process image.
///
/// The answer is kept as the sorted addresses sent and their classes side by
/// side, 9 bytes a block, and looked up by binary search.
#[derive(Debug, Default, Clone)]
pub struct LeakScanState {
    /// Addresses of the latest request, sorted, until its answer arrives.
    sent: Vec<u64>,
    /// Addresses of the answered request, sorted.
    scanned: Vec<u64>,
    /// The class of each of `scanned`.
    classes: Vec<LeakClass>,
    duration_ns: u64,
    root_bytes: u64,
    heap_bytes: u64,
    done: bool,
}

impl LeakScanState {
    /// The live set to send for the scan (sorted by address), remembering its order.
    pub fn request(&mut self, live: impl Iterator<Item = (u64, HeapBlock)>) -> LiveSet {
        let mut blocks: Vec<LiveBlock> = live
            .map(|(addr, b)| LiveBlock {
                addr,
                size: b.size,
                usable: b.usable,
            })
            .collect();
        blocks.sort_unstable_by_key(|b| b.addr);
        self.sent = blocks.iter().map(|b| b.addr).collect();
        LiveSet { blocks }
    }

    /// Takes the scan's answer. Returns `false` if it does not match the request.
    pub fn record(&mut self, scan: LeakScan) -> bool {
        if scan.classes.len() != self.sent.len() {
            return false;
        }
        self.scanned = std::mem::take(&mut self.sent);
        self.classes = scan.classes;
        self.duration_ns = scan.duration_ns;
        self.root_bytes = scan.root_bytes;
        self.heap_bytes = scan.heap_bytes;
        self.done = true;
        true
    }

    /// Whether a scan result arrived.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The class of the block at `addr`, if the scan saw it.
    pub fn class_of(&self, addr: u64) -> Option<LeakClass> {
        let i = self.scanned.binary_search(&addr).ok()?;
        Some(self.classes[i])
    }

    /// How long the scan took in the process, in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }

    /// Bytes of roots and of heap blocks the scan read.
    pub fn scanned_bytes(&self) -> (u64, u64) {
        (self.root_bytes, self.heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn block(size: u64) -> HeapBlock {
        HeapBlock {
            size,
            usable: size,
            stack: 1,
            ts: 0,
            chain: 0,
        }
    }

    #[test]
    fn classes_follow_the_order_sent() {
        let live: HashMap<u64, HeapBlock> =
            [(300, block(8)), (100, block(16)), (200, block(24))].into();
        let mut state = LeakScanState::default();
        let set = state.request(live.into_iter());
        assert_eq!(
            set.blocks.iter().map(|b| b.addr).collect::<Vec<_>>(),
            [100, 200, 300]
        );
        assert_eq!(set.blocks[0].size, 16);
        let scan = LeakScan {
            ts: 1,
            duration_ns: 5,
            classes: vec![
                LeakClass::Definitely,
                LeakClass::Reachable,
                LeakClass::Indirectly,
            ],
            root_bytes: 10,
            heap_bytes: 48,
        };
        assert!(state.record(scan));
        assert_eq!(state.class_of(100), Some(LeakClass::Definitely));
        assert_eq!(state.class_of(200), Some(LeakClass::Reachable));
        assert_eq!(state.class_of(300), Some(LeakClass::Indirectly));
        assert_eq!(state.class_of(400), None);
    }

    #[test]
    fn a_scan_of_the_wrong_length_is_refused() {
        let mut state = LeakScanState::default();
        state.request(std::iter::empty());
        let scan = LeakScan {
            ts: 1,
            duration_ns: 5,
            classes: vec![LeakClass::Definitely],
            root_bytes: 0,
            heap_bytes: 0,
        };
        assert!(!state.record(scan));
        assert!(!state.done());
    }
}

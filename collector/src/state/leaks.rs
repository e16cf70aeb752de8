//! Leak classes of the blocks still live at exit.
//!
//! When a process exits normally the shim asks for its live set
//! ([`memshim_proto::Event::ScanRequest`]), scans its own memory for pointers
//! to those blocks, and answers with one [`LeakClass`] per block, in the order
//! the collector sent them. This module keeps that order and the answer.

use memshim_proto::{LeakClass, LeakScan, LiveBlock, LiveSet};

use super::live::LiveBlocks;

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
    /// Builds the live set to send for the scan (sorted by address), hands it
    /// to `send`, and remembers its order.
    ///
    /// The addresses are then collected in place, in the set's own buffer
    /// (shrunk after), rather than copied while the set is still held.
    pub fn request(&mut self, live: &LiveBlocks, send: impl FnOnce(&LiveSet)) {
        let mut blocks = Vec::with_capacity(live.len());
        blocks.extend(live.iter().map(|(addr, b)| LiveBlock {
            addr,
            size: b.size,
            usable: b.usable,
        }));
        blocks.sort_unstable_by_key(|b| b.addr);
        let set = LiveSet { blocks };
        send(&set);
        self.sent = set.blocks.into_iter().map(|b| b.addr).collect();
        self.sent.shrink_to_fit();
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
    use super::super::live::LiveBlock as HeapBlock;
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
        let mut live = LiveBlocks::default();
        for (addr, size) in [(300, 8), (100, 16), (200, 24)] {
            live.insert_new(addr, block(size));
        }
        let mut state = LeakScanState::default();
        let mut sent = None;
        state.request(&live, |set| sent = Some(set.clone()));
        let sent = sent.unwrap();
        assert_eq!(
            sent.blocks.iter().map(|b| b.addr).collect::<Vec<_>>(),
            [100, 200, 300]
        );
        assert_eq!(sent.blocks[0].size, 16);
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
        state.request(&LiveBlocks::default(), |_| {});
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

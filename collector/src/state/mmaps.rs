//! Memory mappings made by the program, with partial unmaps.

use std::collections::{BTreeMap, HashMap};

/// One mapped range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    end: u64,
    anonymous: bool,
}

/// The live mapped ranges of a process, keyed by start address.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    ranges: BTreeMap<u64, Range>,
    anonymous_bytes: u64,
    file_bytes: u64,
    /// Whether the old range of the `mremap` each thread is in the middle
    /// of was anonymous: it is recorded as the unmap of that range, then
    /// the mapping of the new one, which keeps the old one's kind.
    remapping: HashMap<u32, bool>,
}

impl Mappings {
    /// Records a new mapping of `[addr, addr + len)`, replacing any overlapped part.
    pub fn map(&mut self, addr: u64, len: u64, anonymous: bool) {
        let end = addr.saturating_add(len);
        if end == addr {
            return;
        }
        self.unmap(addr, len);
        self.ranges.insert(addr, Range { end, anonymous });
        *self.bytes_mut(anonymous) += end - addr;
    }

    /// Removes `[addr, addr + len)`, the old range of an `mremap` by thread
    /// `tid`, remembering its kind for the new range ([`Mappings::remap`]).
    pub fn unmap_for_remap(&mut self, tid: u32, addr: u64, len: u64) {
        match self.unmap(addr, len) {
            Some(anonymous) => self.remapping.insert(tid, anonymous),
            None => self.remapping.remove(&tid),
        };
    }

    /// Records the new range of the `mremap` thread `tid` is in the middle
    /// of: of the kind of its old range (anonymous if none was known).
    pub fn remap(&mut self, tid: u32, addr: u64, len: u64) {
        let anonymous = self.remapping.remove(&tid).unwrap_or(true);
        self.map(addr, len, anonymous);
    }

    /// Removes `[addr, addr + len)` from every range it overlaps, splitting
    /// or trimming them. Returns whether the first of them was anonymous,
    /// `None` if nothing was mapped there.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Option<bool> {
        let end = addr.saturating_add(len);
        if end == addr {
            return None;
        }
        // The first candidate may start before `addr` and reach into it.
        let first = self
            .ranges
            .range(..addr)
            .next_back()
            .filter(|(_, r)| r.end > addr)
            .map(|(&s, _)| s);
        let overlapping: Vec<u64> = first
            .into_iter()
            .chain(self.ranges.range(addr..end).map(|(&s, _)| s))
            .collect();
        let first_kind = overlapping
            .first()
            .and_then(|s| self.ranges.get(s))
            .map(|r| r.anonymous);
        for start in overlapping {
            let Some(range) = self.ranges.remove(&start) else {
                continue;
            };
            *self.bytes_mut(range.anonymous) -= range.end - start;
            if start < addr {
                self.keep(start, addr, range.anonymous);
            }
            if range.end > end {
                self.keep(end, range.end, range.anonymous);
            }
        }
        first_kind
    }

    fn keep(&mut self, start: u64, end: u64, anonymous: bool) {
        self.ranges.insert(start, Range { end, anonymous });
        *self.bytes_mut(anonymous) += end - start;
    }

    fn bytes_mut(&mut self, anonymous: bool) -> &mut u64 {
        if anonymous {
            &mut self.anonymous_bytes
        } else {
            &mut self.file_bytes
        }
    }

    /// Total bytes mapped (anonymous and file-backed).
    pub fn live_bytes(&self) -> u64 {
        self.anonymous_bytes + self.file_bytes
    }

    /// Bytes mapped anonymously.
    pub fn anonymous_bytes(&self) -> u64 {
        self.anonymous_bytes
    }

    /// Bytes mapped from files.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Number of distinct ranges.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remap_keeps_the_kind_of_its_threads_old_range() {
        let mut m = Mappings::default();
        m.map(0x1000, 0x2000, false);
        m.map(0x8000, 0x1000, true);
        m.map(0x9000, 0x1000, true);
        // Thread 1 moves and grows the file mapping; thread 2 remaps, and
        // thread 1 unmaps, anonymous ones in between.
        m.unmap_for_remap(1, 0x1000, 0x2000);
        m.unmap_for_remap(2, 0x8000, 0x1000);
        m.unmap(0x9000, 0x1000);
        m.remap(1, 0x20000, 0x4000);
        assert_eq!((m.file_bytes(), m.anonymous_bytes()), (0x4000, 0));
        m.remap(2, 0x30000, 0x2000);
        assert_eq!((m.file_bytes(), m.anonymous_bytes()), (0x4000, 0x2000));
        // Nothing known of the old range: anonymous, as mremap's own pages are.
        m.remap(1, 0x40000, 0x1000);
        assert_eq!((m.file_bytes(), m.anonymous_bytes()), (0x4000, 0x3000));
        // An old range with nothing mapped there forgets an earlier kind.
        m.unmap_for_remap(1, 0x20000, 0x4000);
        m.unmap_for_remap(1, 0x1000, 0x1000);
        m.remap(1, 0x50000, 0x1000);
        assert_eq!((m.file_bytes(), m.anonymous_bytes()), (0, 0x4000));
    }

    #[test]
    fn partial_unmaps_split_and_trim() {
        let mut m = Mappings::default();
        m.map(0x1000, 0x4000, true); // [0x1000, 0x5000)
        m.map(0x10000, 0x1000, false);
        assert_eq!(m.live_bytes(), 0x5000);
        m.unmap(0x2000, 0x1000); // hole in the middle
        assert_eq!((m.anonymous_bytes(), m.range_count()), (0x3000, 3));
        m.unmap(0x0, 0x1800); // trims the head
        assert_eq!(m.anonymous_bytes(), 0x2800);
        m.unmap(0x4800, 0x10000); // trims the tail, removes the file mapping
        assert_eq!((m.anonymous_bytes(), m.file_bytes()), (0x2000, 0));
        m.unmap(0x9000_0000, 0x1000); // nothing there
        assert_eq!(m.live_bytes(), 0x2000);
        assert_eq!(m.range_count(), 2);
        m.map(0x1000, 0x1000_0000, false); // MAP_FIXED over everything
        assert_eq!((m.anonymous_bytes(), m.file_bytes()), (0, 0x1000_0000));
        assert_eq!(m.range_count(), 1);
    }
}

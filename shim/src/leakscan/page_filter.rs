//! A quick "no block here" test for candidate pointers.
//!
//! Every word of the roots and of the reached blocks that falls between the
//! lowest and the highest live block is a candidate pointer, and finding its
//! block is a binary search over all live blocks. That span covers far more
//! than the blocks: in a program whose allocator also maps memory (large
//! blocks, other arenas), it runs from the `brk` heap to the libraries and
//! stacks, so most candidates are pointers to code, stacks or the program's
//! own mappings. In gcc's `cc1` the binary searches were most of the exit
//! scan's time. A bitmap over hashed page numbers, set for every page a live
//! block covers, answers most candidates with one load; a set bit (a page
//! with a block, or a collision) falls through to the search. Its size
//! follows the number of blocks, from 512 bytes to 32 KiB.

use memshim_proto::LiveBlock;

/// Most bits of the bitmap (32 KiB: cache-resident during the scan).
const MAX_BITS: usize = 1 << 18;
/// Fewest bits (512 bytes).
const MIN_BITS: usize = 1 << 12;
/// Bits per live block: few collisions, and a small process's bitmap stays
/// small (each page of it costs a fault before the scan can start).
const BITS_PER_BLOCK: usize = 64;
const PAGE_SHIFT: u32 = 12;

/// The filter is built only where the blocks' pages are fewer than this
/// fraction (1/n) of the pages their span covers.
const SPARSE_FACTOR: u64 = 4;

/// Pages holding part of some live block, hashed into a bitmap.
pub struct PageFilter {
    bits: Vec<u64>,
    /// log2 of the number of bits.
    order: u32,
}

impl PageFilter {
    /// The filter of `blocks`, whose span is `[lo, hi)`, if they lie sparse
    /// in it. Where they cover much of their span (a heap of small blocks
    /// side by side), nearly every candidate points into one anyway: the
    /// filter would only add work (a tenth more scan time for a million
    /// blocks in one heap).
    pub fn for_sparse(blocks: &[LiveBlock], lo: u64, hi: u64) -> Option<PageFilter> {
        let span_pages = (hi.saturating_sub(lo) >> PAGE_SHIFT) + 1;
        // Counts a page shared by several blocks several times: errs
        // towards "dense".
        let block_pages: u64 = blocks.iter().map(|b| pages_of(b).count() as u64).sum();
        (block_pages.saturating_mul(SPARSE_FACTOR) < span_pages).then(|| PageFilter::new(blocks))
    }

    /// The filter of `blocks` (a block of size 0 covers its address).
    pub fn new(blocks: &[LiveBlock]) -> PageFilter {
        let size = blocks
            .len()
            .saturating_mul(BITS_PER_BLOCK)
            .next_power_of_two()
            .clamp(MIN_BITS, MAX_BITS);
        let mut filter = PageFilter {
            bits: vec![0; size / 64],
            order: size.trailing_zeros(),
        };
        for b in blocks {
            let pages = pages_of(b);
            if pages.end() - pages.start() >= size as u64 {
                // Covers every bit anyway.
                filter.bits.fill(u64::MAX);
                break;
            }
            for page in pages {
                let bit = filter.bit(page);
                filter.bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        filter
    }

    fn bit(&self, page: u64) -> usize {
        (page.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.order)) as usize
    }

    /// Whether `addr` may point into a live block (`false`: it surely does not).
    #[inline]
    pub fn may_hold(&self, addr: u64) -> bool {
        let bit = self.bit(addr >> PAGE_SHIFT);
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// The page numbers `b` covers (a block of size 0 covers its address).
fn pages_of(b: &LiveBlock) -> std::ops::RangeInclusive<u64> {
    (b.addr >> PAGE_SHIFT)..=((b.addr + b.size.max(1) - 1) >> PAGE_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(addr: u64, size: u64) -> LiveBlock {
        LiveBlock {
            addr,
            size,
            usable: size,
        }
    }

    #[test]
    fn every_byte_of_every_block_may_be_held() {
        let blocks = [
            block(0x5555_0000_0010, 24),
            block(0x5555_0000_2ff8, 16), // across a page boundary
            block(0x7f00_0000_0000, 3 * 4096),
            block(0x7f00_1000_0000, 0),
        ];
        let filter = PageFilter::new(&blocks);
        for b in &blocks {
            for addr in b.addr..b.addr + b.size.max(1) {
                assert!(filter.may_hold(addr), "{addr:#x}");
            }
        }
    }

    #[test]
    fn most_other_pages_are_ruled_out() {
        let blocks: Vec<LiveBlock> = (0..1000)
            .map(|i| block(0x5555_0000_0000 + i * 4096, 64))
            .collect();
        let filter = PageFilter::new(&blocks);
        let others = 100_000u64;
        let passed = (0..others)
            .filter(|i| filter.may_hold(0x7f12_3400_0000 + i * 4096 + 8))
            .count();
        // 1,000 of 65,536 bits set: about 1.5 % of other pages collide.
        assert!(
            passed < 3_000,
            "{passed} of {others} unrelated pages passed"
        );
    }

    #[test]
    fn a_huge_block_sets_every_bit() {
        let filter = PageFilter::new(&[block(0x1000, (MIN_BITS as u64 + 1) << PAGE_SHIFT)]);
        assert!(filter.may_hold(0xdead_beef_0000));
    }

    #[test]
    fn blocks_side_by_side_get_no_filter_and_scattered_ones_do() {
        let side_by_side: Vec<LiveBlock> =
            (0..10_000).map(|i| block(0x1000 + i * 32, 24)).collect();
        let (lo, hi) = (0x1000, 0x1000 + 10_000 * 32);
        assert!(PageFilter::for_sparse(&side_by_side, lo, hi).is_none());
        let scattered = [block(0x5555_0000_0000, 24), block(0x7f00_0000_0000, 24)];
        assert!(PageFilter::for_sparse(&scattered, 0x5555_0000_0000, 0x7f00_0000_0018).is_some());
    }

    #[test]
    fn the_bitmap_grows_with_the_blocks_up_to_32_kib() {
        assert_eq!(PageFilter::new(&[block(0x1000, 8)]).bits.len() * 8, 512);
        let many: Vec<LiveBlock> = (0..100_000).map(|i| block(0x1000 + i * 64, 8)).collect();
        assert_eq!(PageFilter::new(&many).bits.len() * 8, 32 << 10);
    }
}

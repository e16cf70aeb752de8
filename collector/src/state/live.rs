//! The live set: every allocated block by address, in 24-byte entries.
//!
//! The collector holds one entry per live block of every process it follows,
//! so the size of an entry and the slack of the table are its memory use.
//!
//! * Packing: a block's address, requested size, slack (`usable - size`),
//!   allocation time, realloc chain and stack fit in three words when they
//!   are of everyday magnitude (address below 2^48, size below 4 GiB, slack
//!   below 64 KiB, time below 2^56 ns, chain below 256); the stack id, a
//!   64-bit hash, is replaced by a 32-bit index into the stacks seen. A block
//!   that does not fit is kept whole in a small side map: nothing is lost.
//! * Sharding: a hash table doubles when it grows, and for a moment holds
//!   both its old and new arrays; right after, it is less than half full.
//!   The set is split into `SHARDS` tables chosen by address hash, each
//!   growing on its own, so that moment costs a 1/`SHARDS` of the set
//!   instead of one and a half times it. Shard `i` takes a share of the
//!   blocks proportional to 2^(i/`SHARDS`): the shards' fill levels are
//!   then spread evenly over a doubling whatever the number of blocks, and
//!   the set costs about 25 × 8/7 / ln 2 ≈ 41 bytes a block (24 of entry, 1
//!   of control byte, 7/8 the most a table fills) instead of anything between
//!   29 and 57 depending on where the number falls between two powers of two.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::FxHashMap as HashMap;

use memshim_proto::StackId;

/// A block that is currently allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBlock {
    /// Requested size in bytes.
    pub size: u64,
    /// What the allocator really reserved.
    pub usable: u64,
    /// Allocation stack.
    pub stack: StackId,
    /// Nanoseconds since process start at allocation.
    pub ts: u64,
    /// Number of `realloc`s this block went through (0 for a fresh block).
    pub chain: u32,
}

/// Independent hash tables the set is split into.
const SHARDS: usize = 64;
/// Bits of an address's hash that pick its shard through [`SHARD_OF`].
const SLOT_BITS: u32 = 10;
/// Where those bits start in the hash: clear of the low bits that pick a
/// bucket and of the top 7 bits the table keeps as a tag.
const SLOT_SHIFT: u32 = 40;
/// The shard of each slot: shard `i` gets the slots `x` (as a fraction of
/// all) with `i <= SHARDS * log2(1 + x) < i + 1`, a share of them
/// proportional to 2^(i/SHARDS).
static SHARD_OF: [u8; 1 << SLOT_BITS] = shard_table();
/// Odd multiplier of the address hash (2^64 / golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bits of the first word for the address; the rest hold the slack.
const ADDR_BITS: u32 = 48;
/// Bits of the second word for the allocation time; the rest hold the chain.
const TS_BITS: u32 = 56;
/// Bits of the third word for the size; the rest hold the stack index.
const SIZE_BITS: u32 = 32;

/// A block packed in three words: address | slack, time | chain, size | stack index.
#[derive(Debug, Clone, Copy)]
struct Packed([u64; 3]);

impl Packed {
    /// Packs a block whose stack has index `stack`, if every field fits.
    fn new(addr: u64, block: &LiveBlock, stack: u32) -> Option<Packed> {
        let slack = block.usable.checked_sub(block.size)?;
        let chain = u64::from(block.chain);
        let fits = addr >> ADDR_BITS == 0
            && slack >> (64 - ADDR_BITS) == 0
            && block.ts >> TS_BITS == 0
            && chain >> (64 - TS_BITS) == 0
            && block.size >> SIZE_BITS == 0;
        fits.then_some(Packed([
            addr | slack << ADDR_BITS,
            block.ts | chain << TS_BITS,
            block.size | u64::from(stack) << SIZE_BITS,
        ]))
    }

    fn addr(&self) -> u64 {
        self.0[0] & ((1 << ADDR_BITS) - 1)
    }

    /// The index of the block's stack id.
    fn stack(&self) -> u32 {
        (self.0[2] >> SIZE_BITS) as u32
    }

    /// The block, its stack id looked up in `stacks` (indexed as packed).
    fn unpack(&self, stacks: &[StackId]) -> LiveBlock {
        let [a, t, s] = self.0;
        let size = s & ((1 << SIZE_BITS) - 1);
        LiveBlock {
            size,
            usable: size + (a >> ADDR_BITS),
            stack: stacks[self.stack() as usize],
            ts: t & ((1 << TS_BITS) - 1),
            chain: (t >> TS_BITS) as u32,
        }
    }
}

/// A well-mixed 64-bit hash of an address (a folded multiply).
fn hash(addr: u64) -> u64 {
    let product = u128::from(addr) * u128::from(MULTIPLIER);
    product as u64 ^ (product >> 64) as u64
}

fn shard_of(hash: u64) -> usize {
    let slot = (hash >> SLOT_SHIFT) as usize & ((1 << SLOT_BITS) - 1);
    usize::from(SHARD_OF[slot])
}

/// Builds [`SHARD_OF`]: each slot's midpoint against the shard bounds 2^(i/SHARDS) - 1.
const fn shard_table() -> [u8; 1 << SLOT_BITS] {
    /// 2^(1/SHARDS), the ratio of one shard's share to the previous one's.
    const RATIO: f64 = 1.010_889_286_051_700_5;
    let mut table = [0u8; 1 << SLOT_BITS];
    let (mut slot, mut shard, mut upper) = (0, 0u8, RATIO);
    while slot < table.len() {
        let x = 1.0 + (slot as f64 + 0.5) / table.len() as f64;
        while x >= upper {
            shard += 1;
            upper *= RATIO;
        }
        table[slot] = shard;
        slot += 1;
    }
    table
}

/// The live blocks of one process by address.
#[derive(Debug, Clone)]
pub struct LiveBlocks {
    shards: Box<[HashTable<Packed>]>,
    /// Blocks with a field too large to pack.
    spilled: HashMap<u64, LiveBlock>,
    /// Stack ids by the index packed blocks refer to them with.
    stacks: Vec<StackId>,
    stack_index: HashMap<StackId, u32>,
}

impl Default for LiveBlocks {
    fn default() -> Self {
        LiveBlocks {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            spilled: HashMap::default(),
            stacks: Vec::new(),
            stack_index: HashMap::default(),
        }
    }
}

impl LiveBlocks {
    /// Adds the block at `addr`; returns the block it replaced, if the address was live.
    pub fn insert(&mut self, addr: u64, block: LiveBlock) -> Option<LiveBlock> {
        let stack = self.intern(block.stack);
        self.replace(addr, &block, stack).map(|(old, _)| old)
    }

    /// Adds the block at `addr`, which must not be live (remove it first).
    pub fn insert_new(&mut self, addr: u64, block: LiveBlock) {
        let replaced = self.insert(addr, block);
        debug_assert!(replaced.is_none(), "{addr:#x} was live");
    }

    /// Removes the block at `addr`, if it is live.
    pub fn remove(&mut self, addr: u64) -> Option<LiveBlock> {
        self.remove_indexed(addr).map(|(block, _)| block)
    }

    /// Puts `block` at `addr`, packed with `stack`, the index [`Self::intern`]
    /// gave its stack id (`None`: keep it whole). Returns the block it
    /// replaced, with its stack index if it was packed.
    ///
    /// One probe of the table when it has room, and the table then ends up
    /// exactly as after [`Self::remove`] and an insertion, in the same slots.
    #[inline(always)]
    pub fn replace(
        &mut self,
        addr: u64,
        block: &LiveBlock,
        stack: Option<u32>,
    ) -> Option<(LiveBlock, Option<u32>)> {
        let Some(packed) = stack.and_then(|stack| Packed::new(addr, block, stack)) else {
            let replaced = self.remove_indexed(addr);
            self.spilled.insert(addr, *block);
            return replaced;
        };
        let h = hash(addr);
        let shard = &mut self.shards[shard_of(h)];
        let rehash = |q: &Packed| hash(q.addr());
        let old = if shard.len() < shard.capacity() {
            // No growth: `entry` probes once where removal and insertion probe twice.
            match shard.entry(h, |q| q.addr() == addr, rehash) {
                Entry::Vacant(slot) => {
                    slot.insert(packed);
                    None
                }
                Entry::Occupied(entry) => {
                    let (old, _) = entry.remove();
                    shard.insert_unique(h, packed, rehash);
                    Some(old)
                }
            }
        } else {
            // Full: `entry` would grow it even to replace; keep to the old steps.
            let old = match shard.find_entry(h, |q| q.addr() == addr) {
                Ok(entry) => Some(entry.remove().0),
                Err(_) => None,
            };
            shard.insert_unique(h, packed, rehash);
            old
        };
        match old {
            Some(old) => Some(self.unpack(&old)),
            None if self.spilled.is_empty() => None,
            None => self.spilled.remove(&addr).map(|b| (b, None)),
        }
    }

    /// Removes the block at `addr`, if it is live; with its stack index if it was packed.
    #[inline(always)]
    pub fn remove_indexed(&mut self, addr: u64) -> Option<(LiveBlock, Option<u32>)> {
        if addr >> ADDR_BITS == 0 {
            let h = hash(addr);
            if let Ok(entry) = self.shards[shard_of(h)].find_entry(h, |p| p.addr() == addr) {
                let packed = entry.remove().0;
                return Some(self.unpack(&packed));
            }
        }
        if self.spilled.is_empty() {
            return None;
        }
        self.spilled.remove(&addr).map(|b| (b, None))
    }

    fn unpack(&self, packed: &Packed) -> (LiveBlock, Option<u32>) {
        (packed.unpack(&self.stacks), Some(packed.stack()))
    }

    /// The packed block at `addr`, if it is live and packed.
    #[inline]
    fn find_packed(&self, addr: u64) -> Option<&Packed> {
        if addr >> ADDR_BITS != 0 {
            return None;
        }
        let h = hash(addr);
        self.shards[shard_of(h)].find(h, |p| p.addr() == addr)
    }

    /// The block at `addr`, if it is live.
    pub fn get(&self, addr: u64) -> Option<LiveBlock> {
        match self.find_packed(addr) {
            Some(p) => Some(p.unpack(&self.stacks)),
            None => self.spilled.get(&addr).copied(),
        }
    }

    /// Whether a block is live at `addr`: a probe, nothing unpacked.
    #[inline]
    pub fn contains(&self, addr: u64) -> bool {
        self.find_packed(addr).is_some()
            || (!self.spilled.is_empty() && self.spilled.contains_key(&addr))
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum::<usize>() + self.spilled.len()
    }

    /// Whether no block is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live block with its address, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, LiveBlock)> + '_ {
        self.iter_indexed().map(|(addr, block, _)| (addr, block))
    }

    /// Every live block with its address and stack index (if packed), in
    /// the order of [`Self::iter`].
    pub fn iter_indexed(&self) -> impl Iterator<Item = (u64, LiveBlock, Option<u32>)> + '_ {
        let packed = self.shards.iter().flat_map(move |shard| {
            shard.iter().map(move |p| {
                let (block, stack) = self.unpack(p);
                (p.addr(), block, stack)
            })
        });
        let spilled = self
            .spilled
            .iter()
            .map(|(&addr, &block)| (addr, block, None));
        packed.chain(spilled)
    }

    /// The index packed blocks of `stack` refer to it with, added if new
    /// (`None` past 2^32 stacks: such blocks are kept whole).
    pub fn intern(&mut self, stack: StackId) -> Option<u32> {
        if let Some(&index) = self.stack_index.get(&stack) {
            return Some(index);
        }
        let index = u32::try_from(self.stacks.len()).ok()?;
        self.stacks.push(stack);
        self.stack_index.insert(stack, index);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(size: u64, stack: StackId) -> LiveBlock {
        LiveBlock {
            size,
            usable: size.next_multiple_of(16) + 8,
            stack,
            ts: 123_456_789,
            chain: 2,
        }
    }

    fn with(mut b: LiveBlock, change: impl FnOnce(&mut LiveBlock)) -> LiveBlock {
        change(&mut b);
        b
    }

    #[test]
    fn an_entry_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Packed>(), 24);
    }

    #[test]
    fn every_field_comes_back_packed_or_not() {
        let mut live = LiveBlocks::default();
        let stack = 0xdead_beef_cafe_f00d;
        let everyday = block(40, stack);
        let odd = [
            (1 << 48, everyday),
            (1 << 56 | 0x10, everyday),
            (0x20, block(5 << 30, stack)),
            (0x30, with(everyday, |b| b.usable = 1 << 20)),
            (0x40, with(everyday, |b| b.usable = 8)),
            (0x50, with(everyday, |b| b.ts = 1 << 60)),
            (0x60, with(everyday, |b| b.chain = 300)),
        ];
        live.insert_new(0x7fff_ffff_fff0, everyday);
        for (addr, b) in odd {
            live.insert_new(addr, b);
        }
        assert_eq!(live.spilled.len(), odd.len());
        assert_eq!(live.len(), odd.len() + 1);
        assert_eq!(live.get(0x7fff_ffff_fff0), Some(everyday));
        for (addr, b) in odd {
            assert_eq!(live.get(addr), Some(b), "{addr:#x}");
        }
        let mut all: Vec<(u64, LiveBlock)> = live.iter().collect();
        all.sort_by_key(|&(addr, _)| addr);
        assert_eq!(all.len(), live.len());
        assert_eq!(all[0], (0x20, odd[2].1));
        for (addr, b) in odd {
            assert_eq!(live.remove(addr), Some(b));
        }
        assert_eq!(live.remove(0x7fff_ffff_fff0), Some(everyday));
        assert!(live.is_empty());
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut live = LiveBlocks::default();
        for i in 0..10_000u64 {
            assert_eq!(live.insert(0x1000 + i * 16, block(i, i % 7)), None);
        }
        assert_eq!(live.len(), 10_000);
        let old = live.insert(0x1000, block(99, 8));
        assert_eq!(old, Some(block(0, 0)));
        assert_eq!(live.get(0x1000), Some(block(99, 8)));
        for i in (0..10_000u64).step_by(2) {
            assert!(live.remove(0x1000 + i * 16).is_some());
        }
        assert_eq!(live.len(), 5_000);
        assert!(!live.contains(0x1000));
        assert_eq!(live.get(0x1010), Some(block(1, 1)));
        assert_eq!(live.remove(0x1000), None);
        let used = live.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, SHARDS, "addresses spread over every shard");
    }

    #[test]
    fn replacing_leaves_the_table_as_removal_and_insertion_do() {
        let (mut replaced, mut reinserted) = (LiveBlocks::default(), LiveBlocks::default());
        let addr = |i: u64| 0x1000 + i * 16;
        // Fill, then free most: tombstones an insertion may reuse before the
        // slot of the block it replaces. Some shards end full, some not.
        for live in [&mut replaced, &mut reinserted] {
            for i in 0..20_000u64 {
                live.insert_new(addr(i), block(i, i % 5));
            }
            for i in (0..20_000u64).filter(|i| i % 4 != 0) {
                live.remove(addr(i));
            }
        }
        for i in (0..20_000u64).step_by(4) {
            let new = block(i + 1, 9);
            assert_eq!(replaced.insert(addr(i), new), Some(block(i, i % 5)));
            assert_eq!(reinserted.remove(addr(i)), Some(block(i, i % 5)));
            reinserted.insert_new(addr(i), new);
        }
        let order = |live: &LiveBlocks| live.iter().map(|(a, _)| a).collect::<Vec<u64>>();
        assert_eq!(order(&replaced), order(&reinserted));
        assert_eq!(replaced.len(), 5_000);
        assert_eq!(replaced.get(addr(8)), Some(block(9, 9)));
    }

    #[test]
    fn the_tables_fill_slot_for_slot_as_with_removal_and_plain_insertion() {
        let mut live = LiveBlocks::default();
        let mut plain: Vec<HashTable<Packed>> = (0..SHARDS).map(|_| HashTable::new()).collect();
        let rehash = |q: &Packed| hash(q.addr());
        let mut rng = 0x853c_49e6_748f_ea9bu64;
        for i in 0..60_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let addr = 0x10_0000 + (rng % 20_000) * 16;
            if i % 3 == 2 {
                live.remove(addr);
                let h = hash(addr);
                if let Ok(e) = plain[shard_of(h)].find_entry(h, |p| p.addr() == addr) {
                    e.remove();
                }
                continue;
            }
            let b = block(i % 1000, i % 3);
            live.insert(addr, b);
            // What the live set did before `replace`: remove, then insert unchecked.
            let h = hash(addr);
            let shard = &mut plain[shard_of(h)];
            if let Ok(e) = shard.find_entry(h, |p| p.addr() == addr) {
                e.remove();
            }
            let packed = Packed::new(addr, &b, live.intern(b.stack).unwrap()).unwrap();
            shard.insert_unique(h, packed, rehash);
        }
        for (ours, theirs) in live.shards.iter().zip(&plain) {
            let order = |t: &HashTable<Packed>| t.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(order(ours), order(theirs));
            assert_eq!(ours.capacity(), theirs.capacity());
        }
        assert!(live.len() > 5_000);
    }

    #[test]
    fn stack_indices_come_back_with_packed_blocks_only() {
        let mut live = LiveBlocks::default();
        let (a, b) = (live.intern(0xa), live.intern(0xb));
        assert_eq!((a, b, live.intern(0xa)), (Some(0), Some(1), Some(0)));
        assert_eq!(live.stacks, [0xa, 0xb]);
        assert_eq!(live.replace(0x10, &block(8, 0xb), b), None);
        assert_eq!(live.replace(1 << 50, &block(8, 0xa), a), None, "spilled");
        let old = live.replace(0x10, &block(16, 0xa), a);
        assert_eq!(old, Some((block(8, 0xb), Some(1))));
        let mut all: Vec<_> = live.iter_indexed().collect();
        all.sort_by_key(|&(addr, _, _)| addr);
        assert_eq!(
            all,
            [
                (0x10, block(16, 0xa), Some(0)),
                (1 << 50, block(8, 0xa), None)
            ]
        );
        assert_eq!(live.remove_indexed(1 << 50), Some((block(8, 0xa), None)));
        assert_eq!(live.remove_indexed(0x10), Some((block(16, 0xa), Some(0))));
        assert_eq!(live.remove_indexed(0x10), None);
    }

    #[test]
    fn shard_shares_grow_geometrically() {
        let mut slots = [0usize; SHARDS];
        for &shard in &SHARD_OF {
            slots[usize::from(shard)] += 1;
        }
        let total = (1 << SLOT_BITS) as f64;
        for (i, &n) in slots.iter().enumerate() {
            let share =
                2f64.powf((i + 1) as f64 / SHARDS as f64) - 2f64.powf(i as f64 / SHARDS as f64);
            assert!(
                (n as f64 - share * total).abs() <= 1.0,
                "shard {i}: {n} slots"
            );
        }
    }
}

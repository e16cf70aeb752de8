//! A thread's unwind rules by address, compiled a function at a time.
//!
//! Finding the rule for an address the thread has not unwound before means
//! a binary search of `.eh_frame_hdr`, parsing the FDE and its CIE, and
//! running the FDE's CFI program up to the address. In a large program
//! that is most of the cost of exact mode: cc1 returns to some 4,500
//! distinct addresses in its allocating stacks, each costing about 2 µs
//! through framehop (which also forgets rules its 509-entry cache evicts),
//! 15 ms in all for a 40 ms compilation.
//!
//! So the first address met in a function runs the function's whole CFI
//! program once (gimli's `UnwindTable`) and keeps every row as a [`Rule`];
//! other addresses in the same function are then found in the compiled
//! functions by address (without the search of `.eh_frame_hdr`, whose
//! pages are cold) and a binary search in their rows. In front of that, a
//! direct-mapped cache by address answers the addresses seen before in a
//! load and a compare.
//!
//! Everything is per thread (no lock, no sharing) and keyed by absolute
//! address, valid for one module snapshot: a new generation (a `dlopen` or
//! `dlclose` elsewhere) empties it. Misses allocate (rows, the FDE map),
//! which the capture allows: it runs under the guard, on the shim's heap.

use std::collections::BTreeMap;
use std::ops::Range;

use gimli::{
    BaseAddresses, EhFrame, EhFrameHdr, EndianSlice, FrameDescriptionEntry, LittleEndian, Pointer,
    UnwindContext, UnwindSection,
};

use super::elf::Found;
use super::registry::Snapshot;
use super::rules::{translate, Rule};

/// Cache entries of a thread that has unwound little.
const SMALL: usize = 1 << 10;
/// Cache entries once it has missed [`GROW_AFTER`] times.
const LARGE: usize = 1 << 14;
/// Misses before the cache grows to [`LARGE`].
const GROW_AFTER: u32 = SMALL as u32;

/// The unwind sections as gimli reads them.
type Bytes<'a> = EndianSlice<'a, LittleEndian>;

/// One cached answer: the rule for a lookup address (0: empty).
#[derive(Clone, Copy)]
struct Slot {
    address: u64,
    rule: Rule,
}

const EMPTY: Slot = Slot {
    address: 0,
    rule: Rule::Framehop,
};

/// One function's compiled rows.
struct Function {
    /// The addresses its FDE covers.
    covers: Range<u64>,
    /// Its rows in [`RuleTable::rows`].
    rows: Range<u32>,
}

/// A thread's rules (see the module docs).
pub struct RuleTable {
    /// The snapshot generation the contents belong to.
    generation: u64,
    slots: Box<[Slot]>,
    misses: u32,
    /// Compiled functions by start address.
    functions: BTreeMap<u64, Function>,
    /// Every compiled row: (start address, rule), sorted within a function.
    rows: Vec<(u64, Rule)>,
    /// gimli's evaluation space, kept between compilations.
    context: Box<UnwindContext<usize>>,
}

impl RuleTable {
    /// An empty table. Allocates.
    pub fn new() -> RuleTable {
        RuleTable {
            generation: 0,
            slots: vec![EMPTY; SMALL].into_boxed_slice(),
            misses: 0,
            functions: BTreeMap::new(),
            rows: Vec::new(),
            context: Box::new(UnwindContext::new()),
        }
    }

    /// The rule for `address` (an instruction pointer, or a return address
    /// minus one) in the module set `snap`.
    #[inline(always)]
    pub fn rule(&mut self, snap: &Snapshot, address: u64) -> Rule {
        let i = index(address, self.slots.len());
        let slot = self.slots[i];
        if slot.address == address && self.generation == snap.generation {
            return slot.rule;
        }
        self.miss(snap, address)
    }

    #[cold]
    #[inline(never)]
    fn miss(&mut self, snap: &Snapshot, address: u64) -> Rule {
        if self.generation != snap.generation {
            self.generation = snap.generation;
            self.slots.fill(EMPTY);
            self.functions.clear();
            self.rows.clear();
        }
        self.misses = self.misses.saturating_add(1);
        if self.misses == GROW_AFTER && self.slots.len() < LARGE {
            self.slots = vec![EMPTY; LARGE].into_boxed_slice();
        }
        let rule = snap
            .module_for(address)
            .and_then(|module| self.find(module, address))
            .unwrap_or(Rule::Framehop);
        self.slots[index(address, self.slots.len())] = Slot { address, rule };
        rule
    }

    /// The rule for `address` from `module`'s tables; `None` when they
    /// cannot say (no FDE covers it, or they are malformed).
    fn find(&mut self, module: &Found, address: u64) -> Option<Rule> {
        let known = self.functions.range(..=address).next_back();
        let rows = match known {
            Some((_, function)) if function.covers.contains(&address) => function.rows.clone(),
            _ => self.compile_covering(module, address)?,
        };
        let rows = &self.rows[rows.start as usize..rows.end as usize];
        let after = rows.partition_point(|&(start, _)| start <= address);
        Some(rows[after.checked_sub(1)?].1)
    }

    /// Compiles the function whose FDE covers `address`, found through
    /// `.eh_frame_hdr`; returns its rows.
    fn compile_covering(&mut self, module: &Found, address: u64) -> Option<Range<u32>> {
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(module.eh_frame_hdr_addr)
            .set_eh_frame(module.eh_frame_addr)
            .set_text(module.text.start);
        let hdr = EhFrameHdr::new(&module.eh_frame_hdr, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let fde_address = table.lookup(address, &bases).ok()?.direct().ok()?;
        let offset = table.pointer_to_offset(Pointer::Direct(fde_address)).ok()?;
        let mut eh_frame = EhFrame::new(&module.eh_frame, LittleEndian);
        eh_frame.set_address_size(8);
        let fde = eh_frame
            .fde_from_offset(&bases, offset, EhFrame::cie_from_offset)
            .ok()?;
        // The search gives the nearest FDE below: in a gap of the tables it
        // is not this address's, and framehop decides.
        if !fde.contains(address) {
            return None;
        }
        let function = self.compile(&eh_frame, &bases, &fde)?;
        let rows = function.rows.clone();
        self.functions.insert(function.covers.start, function);
        Some(rows)
    }

    /// Runs one FDE's CFI program to its end, appending its rows.
    fn compile(
        &mut self,
        eh_frame: &EhFrame<Bytes<'_>>,
        bases: &BaseAddresses,
        fde: &FrameDescriptionEntry<Bytes<'_>>,
    ) -> Option<Function> {
        let first = self.rows.len();
        let mut table = fde.rows(eh_frame, bases, &mut self.context).ok()?;
        loop {
            match table.next_row() {
                Ok(Some(row)) => self.rows.push((row.start_address(), translate(row))),
                Ok(None) => break,
                Err(_) => {
                    self.rows.truncate(first);
                    return None;
                }
            }
        }
        Some(Function {
            covers: fde.initial_address()..fde.end_address(),
            rows: u32::try_from(first).ok()?..u32::try_from(self.rows.len()).ok()?,
        })
    }
}

/// The cache slot of `address` (Fibonacci hashing: return addresses share
/// their low bits with many others).
#[inline(always)]
fn index(address: u64, len: usize) -> usize {
    (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - len.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::registry::{self, Cache};
    use framehop::x86_64::UnwindRegsX86_64;
    use framehop::{FrameAddress, Unwinder as _};

    /// A fake stack of 64 words at `BASE`: each word a distinct, plausible
    /// return address.
    const BASE: u64 = 0x7f00_0000_0000;
    fn word(addr: u64) -> Result<u64, ()> {
        (BASE..BASE + 64 * 8)
            .contains(&addr)
            .then(|| 0x1000 + addr - BASE)
            .ok_or(())
    }

    /// Every row of every FDE of the modules loaded in this test process
    /// (the test binary, libc, the loader, ...): stepping with the compiled
    /// rule gives exactly what framehop gives, as the innermost frame and as
    /// a caller, at the first and the last address of the row.
    #[test]
    fn compiled_rules_step_exactly_as_framehop_does() {
        registry::refresh(None);
        let slot = registry::claim_slot(0, 0).expect("a free slot");
        let (compared, delegated) = registry::with_snapshot(slot, |snap| {
            let mut table = RuleTable::new();
            let mut cache = Box::new(Cache::new_in());
            let (mut compared, mut delegated) = (0u32, 0u32);
            for module in snap.modules() {
                let bases = BaseAddresses::default()
                    .set_eh_frame(module.eh_frame_addr)
                    .set_text(module.text.start);
                let mut eh_frame = EhFrame::new(&module.eh_frame, LittleEndian);
                eh_frame.set_address_size(8);
                let mut ctx = UnwindContext::new();
                let mut entries = eh_frame.entries(&bases);
                while let Ok(Some(entry)) = entries.next() {
                    let gimli::CieOrFde::Fde(partial) = entry else {
                        continue;
                    };
                    let Ok(fde) = partial.parse(EhFrame::cie_from_offset) else {
                        continue;
                    };
                    let Ok(mut rows) = fde.rows(&eh_frame, &bases, &mut ctx) else {
                        continue;
                    };
                    let mut spans = Vec::new();
                    while let Ok(Some(row)) = rows.next_row() {
                        spans.push((row.start_address(), row.end_address()));
                    }
                    for (start, end) in spans {
                        for lookup in [start, end - 1] {
                            let rule = table.rule(snap, lookup);
                            if rule == Rule::Framehop {
                                delegated += 1;
                                continue;
                            }
                            for address in [
                                FrameAddress::from_instruction_pointer(lookup),
                                FrameAddress::from_return_address(lookup + 1).unwrap(),
                            ] {
                                for bp in [0, BASE + 40, BASE + 8 * 70] {
                                    let regs = UnwindRegsX86_64::new(lookup, BASE, bp);
                                    let (mut ours, mut theirs) = (regs, regs);
                                    let first = !address.is_return_address();
                                    let a = rule.exec(first, &mut ours, &mut word).ok();
                                    let b = snap
                                        .unwinder
                                        .unwind_frame(address, &mut theirs, &mut cache, &mut word)
                                        .ok();
                                    assert_eq!(
                                        (a, ours.ip(), ours.sp(), ours.bp()),
                                        (b, theirs.ip(), theirs.sp(), theirs.bp()),
                                        "{rule:?} at {lookup:#x}, first frame {first}, bp {bp:#x}"
                                    );
                                    compared += 1;
                                }
                            }
                        }
                    }
                }
            }
            (compared, delegated)
        })
        .expect("a snapshot");
        registry::release_slot(slot);
        // The compact rules cover nearly everything compilers emit.
        assert!(compared > 10_000, "only {compared} steps compared");
        assert!(
            delegated * 100 < compared,
            "{delegated} rows left to framehop against {compared} steps compared"
        );
    }
}

//! memcheck's leak-check heuristics (its default, `--leak-check-heuristics=all`).
//!
//! Some interior pointers are how C++ and common C idioms point at a live
//! block: memcheck counts a block reached through one of these as reachable,
//! not possibly lost, and so does memshim, with the same four rules.

/// Address ranges of read-only file mappings, where vtables live.
pub struct ReadOnlyRanges(Vec<(u64, u64)>);

impl ReadOnlyRanges {
    /// Reads `/proc/self/maps` for readable, non-writable, file-backed mappings.
    pub fn load() -> ReadOnlyRanges {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let ranges = maps
            .lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                let range = cols.next()?;
                let perms = cols.next()?.as_bytes();
                let inode = cols.nth(2)?;
                if perms.first() != Some(&b'r') || perms.get(1) == Some(&b'w') || inode == "0" {
                    return None;
                }
                let (lo, hi) = range.split_once('-')?;
                Some((
                    u64::from_str_radix(lo, 16).ok()?,
                    u64::from_str_radix(hi, 16).ok()?,
                ))
            })
            .collect();
        ReadOnlyRanges(ranges)
    }

    fn contains(&self, addr: u64) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..hi).contains(&addr))
    }
}

const WORD: u64 = 8;
const PAGE: u64 = 4096;

/// Whether an interior pointer `ptr` into the block `[data, data + size)`
/// matches one of memcheck's heuristics (std::string, length64, new[] array,
/// multiple inheritance). `word` reads the aligned word at an address, if
/// it is readable.
pub fn matches(
    ptr: u64,
    data: u64,
    size: u64,
    vtables: &ReadOnlyRanges,
    mut word: impl FnMut(u64) -> Option<u64>,
) -> bool {
    // libstdc++'s copy-on-write string: length, capacity, refcount, chars.
    if ptr == data + 3 * WORD {
        if let (Some(len), Some(cap)) = (word(data), word(data + WORD)) {
            if 3 * WORD + cap.wrapping_add(1) == size && len <= cap {
                return true;
            }
        }
    }
    if ptr == data + WORD {
        if let Some(first) = word(data) {
            // length64: the first word is the length of the rest.
            if first > 0 && size - WORD == first {
                return true;
            }
            // new[] of objects with a destructor: the element count first.
            if first > 0 && (size - WORD).is_multiple_of(first) {
                return true;
            }
        }
    }
    // Multiple inheritance: both the block's first word and the word at the
    // pointer look like vtable pointers.
    if ptr.is_multiple_of(WORD) {
        if let (Some(inner), Some(first)) = (word(ptr), word(data)) {
            let plausible = |a: u64| a.is_multiple_of(WORD) && a >= PAGE && vtables.contains(a);
            if plausible(inner) && plausible(first) {
                return true;
            }
        }
    }
    false
}

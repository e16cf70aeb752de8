//! memcheck's leak-check heuristics (its default, `--leak-check-heuristics=all`).
//!
//! Some interior pointers are how C++ and common C idioms point at a live
//! block: memcheck counts a block reached through one of these as reachable,
//! not possibly lost, and so does memshim, with the same four rules.

/// Address ranges of the loaded objects' read-only segments, where vtables
/// live (in `.data.rel.ro`, read-only once relocated).
pub struct ReadOnlyRanges(Vec<(u64, u64)>);

impl ReadOnlyRanges {
    /// The non-writable `PT_LOAD` segments and the `PT_GNU_RELRO` ranges of
    /// every loaded object. From the program headers (`dl_iterate_phdr`):
    /// reading `/proc/self/maps` for the same cost ~50 us at every exit.
    pub fn load() -> ReadOnlyRanges {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _: usize,
            data: *mut std::ffi::c_void,
        ) -> std::ffi::c_int {
            let ranges = &mut *(data as *mut Vec<(u64, u64)>);
            let info = &*info;
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for p in phdrs {
                let read_only_load = p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0;
                if read_only_load || p.p_type == libc::PT_GNU_RELRO {
                    let lo = info.dlpi_addr + p.p_vaddr;
                    ranges.push((lo, lo + p.p_memsz));
                }
            }
            0
        }
        // SAFETY: the callback only reads the program headers it is handed.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut ranges as *mut Vec<(u64, u64)>).cast()) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn f() {}
    /// Function pointers needing relocation: `.data.rel.ro`, like a vtable.
    static TABLE: [fn(); 2] = [f, f];
    static WRITABLE: AtomicU64 = AtomicU64::new(1);

    #[test]
    fn relocated_read_only_data_is_read_only_and_the_rest_is_not() {
        let ranges = ReadOnlyRanges::load();
        assert!(
            ranges.contains(TABLE.as_ptr() as u64),
            "a table of function pointers"
        );
        assert!(ranges.contains(f as *const () as u64), "code");
        assert!(
            !ranges.contains(&WRITABLE as *const AtomicU64 as u64),
            "writable data"
        );
        let heap = Box::new(7u64);
        assert!(!ranges.contains(&*heap as *const u64 as u64), "the heap");
        let local = 7u64;
        assert!(!ranges.contains(&local as *const u64 as u64), "the stack");
    }
}

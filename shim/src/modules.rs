//! The module map: every loaded ELF object, its segments and its build-id.
//!
//! The collector symbolizes from the files on disk, so it needs, for each
//! object, where it was loaded and which exact file it was (the build-id).

use std::collections::HashSet;
use std::ffi::{c_int, c_void, CStr};

use memshim_proto::{Module, Segment};

use crate::clock;

const NT_GNU_BUILD_ID: u32 = 3;

/// Every object currently loaded. Runs under the guard (it allocates).
pub fn scan() -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads the headers it is handed.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut out as *mut Vec<Module>).cast()) };
    out
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    let out = &mut *(data as *mut Vec<Module>);
    let info = &*info;
    let name = if info.dlpi_name.is_null() {
        ""
    } else {
        CStr::from_ptr(info.dlpi_name).to_str().unwrap_or("")
    };
    let path = if name.is_empty() && out.is_empty() {
        std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        name.to_owned()
    };
    let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let mut segments = Vec::new();
    let mut build_id = Vec::new();
    for ph in phdrs {
        match ph.p_type {
            libc::PT_LOAD => segments.push(Segment {
                vaddr: ph.p_vaddr,
                memsz: ph.p_memsz,
                file_offset: ph.p_offset,
                executable: ph.p_flags & libc::PF_X != 0,
            }),
            libc::PT_NOTE if build_id.is_empty() => {
                let start = (info.dlpi_addr + ph.p_vaddr) as *const u8;
                build_id = find_build_id(std::slice::from_raw_parts(start, ph.p_memsz as usize));
            }
            _ => {}
        }
    }
    out.push(Module {
        ts: clock::since_start_ns(),
        path,
        base: info.dlpi_addr,
        segments,
        build_id,
    });
    0
}

/// Walks ELF notes (4-byte aligned name and descriptor) for `NT_GNU_BUILD_ID`.
fn find_build_id(mut notes: &[u8]) -> Vec<u8> {
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    while notes.len() >= 12 {
        let namesz = word(&notes[0..]) as usize;
        let descsz = word(&notes[4..]) as usize;
        let kind = word(&notes[8..]);
        let name_end = 12 + namesz.next_multiple_of(4);
        let desc_end = name_end + descsz.next_multiple_of(4);
        if desc_end > notes.len() {
            break;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            return notes[name_end..name_end + descsz].to_vec();
        }
        notes = &notes[desc_end..];
    }
    Vec::new()
}

/// The address range of the object that contains `addr` (the shim itself, to
/// drop its frames from stacks). Allocates nothing: it runs at start-up,
/// where every microsecond is paid by every process.
pub fn range_containing(addr: usize) -> Option<(usize, usize)> {
    struct Search {
        addr: u64,
        found: Option<(usize, usize)>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        let search = &mut *(data as *mut Search);
        let info = &*info;
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        let (lo, hi) = phdrs.iter().filter(|ph| ph.p_type == libc::PT_LOAD).fold(
            (u64::MAX, 0),
            |(lo, hi), ph| {
                let start = info.dlpi_addr + ph.p_vaddr;
                (lo.min(start), hi.max(start + ph.p_memsz))
            },
        );
        if (lo..hi).contains(&search.addr) {
            search.found = Some((lo as usize, hi as usize));
            return 1;
        }
        0
    }
    let mut search = Search {
        addr: addr as u64,
        found: None,
    };
    // SAFETY: the callback only reads the headers it is handed and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
}

/// A cheap fingerprint of the loaded set: glibc's counts of objects ever
/// added and removed, which change on every `dlopen`/`dlclose`.
pub fn generation() -> (u64, u64) {
    let mut gen = (0u64, 0u64);
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        let gen = &mut *(data as *mut (u64, u64));
        *gen = ((*info).dlpi_adds, (*info).dlpi_subs);
        1
    }
    // SAFETY: the callback writes only to `gen` and stops after one object.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut gen as *mut (u64, u64)).cast()) };
    gen
}

/// Remembers which modules the stream has announced, to send only changes.
#[derive(Default)]
pub struct ModuleTracker {
    sent: HashSet<(u64, String)>,
    generation: (u64, u64),
}

/// What changed since the last look.
pub struct ModuleChanges {
    /// Newly loaded objects.
    pub loaded: Vec<Module>,
    /// Load biases of objects that are gone.
    pub unloaded: Vec<u64>,
}

impl ModuleTracker {
    /// The changes since the last call (everything on the first call).
    /// Cheap when nothing was loaded or unloaded.
    pub fn changes(&mut self) -> Option<ModuleChanges> {
        let gen = generation();
        if gen == self.generation && !self.sent.is_empty() {
            return None;
        }
        self.generation = gen;
        let now = scan();
        let current: HashSet<(u64, String)> =
            now.iter().map(|m| (m.base, m.path.clone())).collect();
        let unloaded = self
            .sent
            .iter()
            .filter(|k| !current.contains(k))
            .map(|k| k.0)
            .collect();
        let loaded = now
            .into_iter()
            .filter(|m| !self.sent.contains(&(m.base, m.path.clone())))
            .collect();
        self.sent = current;
        Some(ModuleChanges { loaded, unloaded })
    }
}

//! Finding each loaded object's unwind tables in memory.
//!
//! Everything here reads only what the dynamic loader has mapped: the program
//! headers `dl_iterate_phdr` hands out, the `PT_GNU_EH_FRAME` segment
//! (`.eh_frame_hdr`) and the `.eh_frame` it points at. No file is opened.

use std::ffi::{c_int, c_void};
use std::ops::{Deref, Range};

/// A byte range of mapped memory handed to framehop as section data.
///
/// It points into a loaded object; the registry makes sure that no reader
/// can still reach it once the object may be unmapped (see `registry`).
#[derive(Clone, Copy)]
pub struct Section {
    ptr: *const u8,
    len: usize,
}

impl Default for Section {
    fn default() -> Self {
        Section {
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
        }
    }
}

impl Deref for Section {
    type Target = [u8];

    #[inline(always)]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies inside a mapped, read-only segment of a
        // loaded object (checked against its program headers in `collect`),
        // which stays mapped while any snapshot that can reach it is in use.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// One loaded object with unwind tables, as found in memory.
#[derive(Clone)]
pub struct Found {
    /// Load bias (`dlpi_addr`): runtime address = ELF address + base.
    pub base: u64,
    /// Runtime addresses of its executable segments (lowest start to highest end).
    pub text: Range<u64>,
    /// Runtime address of `.eh_frame_hdr`.
    pub eh_frame_hdr_addr: u64,
    /// The `.eh_frame_hdr` bytes.
    pub eh_frame_hdr: Section,
    /// Runtime address of `.eh_frame`.
    pub eh_frame_addr: u64,
    /// The `.eh_frame` bytes: from its start to the end of the segment holding it.
    pub eh_frame: Section,
}

impl Found {
    /// What identifies this object in a module set: its text range and tables.
    pub fn key(&self) -> (u64, u64, u64) {
        (self.text.start, self.text.end, self.eh_frame_hdr_addr)
    }
}

/// Every loaded object that has an `.eh_frame_hdr`. Allocates: call it with
/// the guard held, never on the capture path (`dl_iterate_phdr` takes the
/// loader's lock).
pub fn scan() -> Vec<Found> {
    let mut out: Vec<Found> = Vec::with_capacity(64);
    // SAFETY: the callback only reads the headers it is handed and the
    // segments they describe.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut out as *mut Vec<Found>).cast()) };
    out
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    let out = &mut *(data as *mut Vec<Found>);
    let info = &*info;
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    let base = info.dlpi_addr;
    let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    // Runtime ranges of the PT_LOAD segments, to bound the tables by mapped memory.
    let loads = || {
        phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| (base.wrapping_add(p.p_vaddr), p))
    };
    let mut text: Option<Range<u64>> = None;
    for (start, p) in loads().filter(|(_, p)| p.p_flags & libc::PF_X != 0) {
        let end = start.wrapping_add(p.p_memsz);
        text = Some(match text {
            None => start..end,
            Some(r) => r.start.min(start)..r.end.max(end),
        });
    }
    let Some(text) = text else { return 0 };
    let Some(hdr) = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME) else {
        return 0;
    };
    let hdr_addr = base.wrapping_add(hdr.p_vaddr);
    let segment_end = |addr: u64| {
        loads()
            .find(|&(start, p)| (start..start.wrapping_add(p.p_memsz)).contains(&addr))
            .map(|(start, p)| start.wrapping_add(p.p_memsz))
    };
    // The header must lie wholly inside a loaded segment before we read it.
    match segment_end(hdr_addr) {
        Some(end) if hdr.p_memsz >= 8 && hdr_addr.wrapping_add(hdr.p_memsz) <= end => {}
        _ => return 0,
    }
    let hdr_bytes = std::slice::from_raw_parts(hdr_addr as *const u8, hdr.p_memsz as usize);
    let Some(eh_frame_addr) = eh_frame_ptr(hdr_bytes, hdr_addr) else {
        return 0;
    };
    let Some(eh_frame_end) = segment_end(eh_frame_addr) else {
        return 0;
    };
    out.push(Found {
        base,
        text,
        eh_frame_hdr_addr: hdr_addr,
        eh_frame_hdr: Section {
            ptr: hdr_addr as *const u8,
            len: hdr.p_memsz as usize,
        },
        eh_frame_addr,
        eh_frame: Section {
            ptr: eh_frame_addr as *const u8,
            len: (eh_frame_end - eh_frame_addr) as usize,
        },
    });
    0
}

// DWARF pointer-encoding constants (LSB "DWARF Extensions", DW_EH_PE_*).
const DW_EH_PE_OMIT: u8 = 0xff;
const DW_EH_PE_ABSPTR: u8 = 0x00;
const DW_EH_PE_UDATA2: u8 = 0x02;
const DW_EH_PE_UDATA4: u8 = 0x03;
const DW_EH_PE_UDATA8: u8 = 0x04;
const DW_EH_PE_SDATA2: u8 = 0x0a;
const DW_EH_PE_SDATA4: u8 = 0x0b;
const DW_EH_PE_SDATA8: u8 = 0x0c;
const DW_EH_PE_PCREL: u8 = 0x10;
const DW_EH_PE_DATAREL: u8 = 0x30;
const DW_EH_PE_INDIRECT: u8 = 0x80;

/// Decodes `eh_frame_ptr`, the runtime address of `.eh_frame`, from the
/// `.eh_frame_hdr` at runtime address `hdr_addr`.
///
/// Written by hand because the header is the only way to find `.eh_frame` in
/// memory (section headers are not mapped) and because it is tiny. Layout:
/// `u8 version (=1)`, `u8 eh_frame_ptr_enc`, `u8 fde_count_enc`,
/// `u8 table_enc`, then `eh_frame_ptr` in `eh_frame_ptr_enc`. The encoding's
/// low nibble is the value's format, bits 4-6 what it is relative to: the
/// field's own address (`pcrel`, what every linker emits: `0x1b`), the
/// header's start (`datarel`), or nothing (`absptr`). Indirect or other
/// encodings are refused, and the object is then left out.
fn eh_frame_ptr(hdr: &[u8], hdr_addr: u64) -> Option<u64> {
    if hdr.len() < 4 || hdr[0] != 1 {
        return None;
    }
    let enc = hdr[1];
    if enc == DW_EH_PE_OMIT || enc & DW_EH_PE_INDIRECT != 0 {
        return None;
    }
    let field = &hdr[4..];
    let int = |n: usize| -> Option<[u8; 8]> {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(field.get(..n)?);
        Some(b)
    };
    let value: i64 = match enc & 0x0f {
        DW_EH_PE_ABSPTR | DW_EH_PE_UDATA8 | DW_EH_PE_SDATA8 => i64::from_le_bytes(int(8)?),
        DW_EH_PE_UDATA4 => u32::from_le_bytes(int(4)?[..4].try_into().ok()?) as i64,
        DW_EH_PE_SDATA4 => i32::from_le_bytes(int(4)?[..4].try_into().ok()?) as i64,
        DW_EH_PE_UDATA2 => u16::from_le_bytes(int(2)?[..2].try_into().ok()?) as i64,
        DW_EH_PE_SDATA2 => i16::from_le_bytes(int(2)?[..2].try_into().ok()?) as i64,
        _ => return None,
    };
    let relative_to = match enc & 0x70 {
        0 => 0,
        DW_EH_PE_PCREL => hdr_addr + 4,
        DW_EH_PE_DATAREL => hdr_addr,
        _ => return None,
    };
    Some(relative_to.wrapping_add_signed(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pcrel_sdata4() {
        // version 1, pcrel|sdata4, eh_frame 0x20 bytes after the field.
        let hdr = [1u8, 0x1b, 0x03, 0x3b, 0x20, 0, 0, 0];
        assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x1000 + 4 + 0x20));
        let back = [1u8, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_ptr(&back, 0x1000), Some(0x1000 + 4 - 0x10));
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(eh_frame_ptr(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_ptr(&[1, 0xff, 0, 0], 0), None);
        assert_eq!(eh_frame_ptr(&[1, 0x9b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_ptr(&[1, 0x1b, 0, 0, 1], 0), None);
    }
}

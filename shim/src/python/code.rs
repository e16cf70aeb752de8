//! Code objects: their ids, and their one-time description for the collector.

use memshim_proto::python::CODE_ID_BITS;
use memshim_proto::{Event, PythonCode};

use super::layout::*;
use super::{read_u32, read_u64, Runtime};
use crate::queue::Channel;

/// Longest line table copied (a module's top-level code can be long; a
/// longer table is cut and its later lines fall back to the `def` line).
const MAX_LINE_TABLE: usize = 1 << 20;
/// Longest name or file name copied, in code points.
const MAX_STRING: usize = 4096;

/// The id of the code object at `code`: a hash of its address and of the
/// objects it points to, so that a new code object at a freed one's address
/// gets a new id.
pub fn id(code: usize) -> u64 {
    let mut h = code as u64;
    for off in [
        CODE_FILENAME,
        CODE_QUALNAME,
        CODE_LINE_TABLE,
        CODE_FIRST_LINE,
    ] {
        // SAFETY: `code` is a live code object (its type was checked).
        let v = unsafe { read_u64(code + off) };
        h = (h.rotate_left(17) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    (h ^ (h >> 29)) & ((1 << CODE_ID_BITS) - 1)
}

/// Queues the description of the code object at `code` under `id`.
///
/// Runs on the hook path, once per code object and process: it allocates
/// (under the guard, so through the real allocator, unrecorded), like the
/// first use of a thread's unwinder.
pub fn announce(rt: &Runtime, code: usize, id: u64, channel: &Channel) {
    // SAFETY: `code` is a live code object; its fields are read as the
    // interpreter lays them out (see `layout`), each object's type checked.
    let described = unsafe {
        PythonCode {
            id,
            qualname: string(rt, read_u64(code + CODE_QUALNAME) as usize),
            filename: string(rt, read_u64(code + CODE_FILENAME) as usize),
            first_line: read_u32(code + CODE_FIRST_LINE),
            line_table: bytes(rt, read_u64(code + CODE_LINE_TABLE) as usize),
        }
    };
    channel.rare.push(Event::PythonCode(described));
}

/// The text of a `str` object (`"?"` for forms a code object never holds).
unsafe fn string(rt: &Runtime, s: usize) -> String {
    if s == 0 || read_u64(s + OB_TYPE) as usize != rt.str_type {
        return "?".into();
    }
    let len = (read_u64(s + STR_LENGTH) as usize).min(MAX_STRING);
    let state = read_u32(s + STR_STATE);
    let (kind, compact, ascii) = (
        (state >> 2) & 7,
        state & (1 << 5) != 0,
        state & (1 << 6) != 0,
    );
    if !compact {
        return "?".into();
    }
    if ascii {
        let bytes = std::slice::from_raw_parts((s + STR_ASCII_DATA) as *const u8, len);
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let data = s + STR_COMPACT_DATA;
    (0..len)
        .map(|i| match kind {
            1 => u32::from(*(data as *const u8).add(i)),
            2 => u32::from((data as *const u16).add(i).read_unaligned()),
            _ => (data as *const u32).add(i).read_unaligned(),
        })
        .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The contents of a `bytes` object (empty if it is not one).
unsafe fn bytes(rt: &Runtime, b: usize) -> Vec<u8> {
    if b == 0 || read_u64(b + OB_TYPE) as usize != rt.bytes_type {
        return Vec::new();
    }
    let len = (read_u64(b + OB_SIZE) as usize).min(MAX_LINE_TABLE);
    std::slice::from_raw_parts((b + BYTES_DATA) as *const u8, len).to_vec()
}

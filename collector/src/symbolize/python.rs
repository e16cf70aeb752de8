//! Python frames: named from the code objects the shim described.
//!
//! A Python frame of a stack is a code-object id and an instruction index
//! ([`PythonFrame`]); the code object gives the function's qualified name and
//! file, and its CPython 3.11 location table maps the instruction to a line,
//! as `PyCode_Addr2Line` does (format: CPython's `Objects/locations.md`).

use memshim_proto::{PythonCode, PythonFrame};

use crate::report::Frame;

/// Module shown for Python frames.
pub const PYTHON_MODULE: &str = "[python]";

/// The report frame of a Python frame (`code` is `None` if its description
/// never arrived).
pub fn frame(entry: PythonFrame, code: Option<&PythonCode>) -> Frame {
    let address = format!("py:{:#x}+{}", entry.code, entry.instruction);
    match code {
        Some(code) => Frame {
            function: code.qualname.clone(),
            file: Some(code.filename.clone()),
            line: Some(
                line(&code.line_table, code.first_line, entry.instruction)
                    .unwrap_or(code.first_line),
            ),
            module: Some(PYTHON_MODULE.into()),
            address,
        },
        None => Frame {
            function: "<python>".into(),
            file: None,
            line: None,
            module: Some(PYTHON_MODULE.into()),
            address,
        },
    }
}

/// The line of the instruction at code unit `instruction`, from a 3.11
/// location table; `None` where the table says "no location" or ends first.
pub fn line(table: &[u8], first_line: u32, instruction: u32) -> Option<u32> {
    let mut line = i64::from(first_line);
    let mut start = 0u32;
    let mut pos = 0;
    while pos < table.len() {
        let head = table[pos];
        let code = (head >> 3) & 15;
        let end = start + u32::from(head & 7) + 1;
        line += match code {
            13 | 14 => signed_varint(&table[pos + 1..]),
            11 => 1,
            12 => 2,
            _ => 0,
        };
        if (start..end).contains(&instruction) {
            return (code != 15).then(|| u32::try_from(line).ok()).flatten();
        }
        start = end;
        pos += 1;
        while pos < table.len() && table[pos] & 0x80 == 0 {
            pos += 1;
        }
    }
    None
}

/// CPython's location-table varint: 6-bit groups, least significant first,
/// bit 6 set on every byte but the last.
fn varint(bytes: &[u8]) -> u64 {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 63) << (6 * i);
        if b & 64 == 0 {
            break;
        }
    }
    value
}

/// A zig-zag signed varint: the lowest bit is the sign.
fn signed_varint(bytes: &[u8]) -> i64 {
    let v = varint(bytes);
    if v & 1 == 1 {
        -((v >> 1) as i64)
    } else {
        (v >> 1) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `co_linetable` and `[p[0] for p in co_positions()]` of a small
    /// function, printed by CPython 3.11.7 (`def` on line 2).
    const TABLE: &[u8] = &[
        128, 0, 216, 9, 10, 136, 3, 136, 97, 137, 7, 128, 65, 224, 14, 15, 216, 14, 15, 240, 3, 1,
        9, 17, 240, 0, 1, 9, 17, 128, 65, 229, 13, 18, 144, 49, 137, 88, 140, 88, 240, 0, 1, 5, 20,
        240, 0, 1, 5, 20, 136, 1, 216, 8, 9, 143, 8, 138, 8, 144, 17, 137, 11, 140, 11, 136, 11,
        136, 11, 216, 11, 12, 128, 72,
    ];
    const LINES: &[u32] = &[
        2, 3, 3, 3, 3, 3, 3, 5, 6, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8,
        8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9,
    ];

    #[test]
    fn lines_match_cpython_for_every_instruction() {
        for (i, &expected) in LINES.iter().enumerate() {
            assert_eq!(line(TABLE, 2, i as u32), Some(expected), "instruction {i}");
        }
        assert_eq!(line(TABLE, 2, LINES.len() as u32), None);
    }

    #[test]
    fn negative_deltas_and_no_location() {
        // Long form (14) +3 over 1 unit, no-columns (13) -2 over 2 units, none (15).
        let table = [
            0x80 | 14 << 3,
            6,
            0,
            1,
            1,
            0x80 | 13 << 3 | 1,
            5,
            0x80 | 15 << 3,
        ];
        assert_eq!(line(&table, 10, 0), Some(13));
        assert_eq!(line(&table, 10, 2), Some(11));
        assert_eq!(line(&table, 10, 3), None);
    }

    #[test]
    fn unknown_code_objects_still_make_a_frame() {
        let f = frame(
            PythonFrame {
                code: 7,
                instruction: 3,
            },
            None,
        );
        assert_eq!(f.module.as_deref(), Some(PYTHON_MODULE));
        assert_eq!(f.function, "<python>");
    }
}

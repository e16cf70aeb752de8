//! Python frames inside native stacks.
//!
//! In a CPython process the shim replaces each native
//! `_PyEval_EvalFrameDefault` frame of a stack by the Python frames that
//! invocation was running, as memray does. A Python frame travels in
//! [`StackDef::frames`](crate::StackDef::frames) as one tagged 64-bit value:
//! bit 63 set (no user-space return address has it), then a 41-bit code-object
//! id, then the 22-bit index of the instruction (in code units) the frame was
//! executing. The code object itself ([`PythonCode`]: names, file and line
//! table) is sent once, before or after the stacks that use it.

use serde::{Deserialize, Serialize};

/// Bit that marks a stack entry as a Python frame.
pub const PYTHON_FRAME_TAG: u64 = 1 << 63;
const INSTRUCTION_BITS: u32 = 22;
const INSTRUCTION_MASK: u64 = (1 << INSTRUCTION_BITS) - 1;
/// Bits of a code-object id.
pub const CODE_ID_BITS: u32 = 63 - INSTRUCTION_BITS;
const CODE_ID_MASK: u64 = (1 << CODE_ID_BITS) - 1;

/// A Python frame of a stack: which code object, at which instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PythonFrame {
    /// Id of the code object (see [`PythonCode::id`]).
    pub code: u64,
    /// Index, in 16-bit code units, of the instruction being executed
    /// (saturated at 2^22 - 1).
    pub instruction: u32,
}

impl PythonFrame {
    /// The tagged stack entry of this frame (the id is cut to its 41 bits).
    pub fn encode(self) -> u64 {
        PYTHON_FRAME_TAG
            | (self.code & CODE_ID_MASK) << INSTRUCTION_BITS
            | u64::from(self.instruction).min(INSTRUCTION_MASK)
    }

    /// The Python frame a stack entry holds, or `None` for a return address.
    pub fn decode(entry: u64) -> Option<PythonFrame> {
        (entry & PYTHON_FRAME_TAG != 0).then_some(PythonFrame {
            code: (entry >> INSTRUCTION_BITS) & CODE_ID_MASK,
            instruction: (entry & INSTRUCTION_MASK) as u32,
        })
    }
}

/// A CPython code object: what names a Python frame and maps it to a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonCode {
    /// Id the [`PythonFrame`]s use (a 41-bit hash of the object's identity).
    pub id: u64,
    /// `co_qualname`: the function's qualified name (`Class.method`, `<module>`).
    pub qualname: String,
    /// `co_filename`: the source file, as the interpreter knows it.
    pub filename: String,
    /// `co_firstlineno`: line of the `def` (or 1 for a module).
    pub first_line: u32,
    /// `co_linetable`: CPython 3.11's location table, decoded by the collector.
    pub line_table: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_never_look_like_addresses() {
        let f = PythonFrame {
            code: 0x1_2345_6789,
            instruction: 77,
        };
        let e = f.encode();
        assert!(e & PYTHON_FRAME_TAG != 0);
        assert_eq!(PythonFrame::decode(e), Some(f));
        assert_eq!(PythonFrame::decode(0x7fff_ffff_f000), None);
        let big = PythonFrame {
            code: u64::MAX,
            instruction: u32::MAX,
        };
        let d = PythonFrame::decode(big.encode()).unwrap();
        assert_eq!(d.code, CODE_ID_MASK);
        assert_eq!(d.instruction, INSTRUCTION_MASK as u32);
    }
}

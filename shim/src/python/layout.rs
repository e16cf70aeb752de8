//! Where CPython 3.11 keeps what the shim reads, in bytes from a struct's start.
//!
//! These are private interpreter structures (`Include/internal/pycore_frame.h`,
//! `Include/cpython/pystate.h`, `code.h`, `unicodeobject.h`); their layout is
//! fixed within a minor version, which is why [`super::detect`] accepts 3.11
//! only (from `Py_Version`). Values checked with `offsetof` against the 3.11
//! headers on x86-64.

/// `PyObject.ob_type`.
pub const OB_TYPE: usize = 8;
/// `PyVarObject.ob_size` (length of a `bytes`).
pub const OB_SIZE: usize = 16;

/// `PyThreadState.cframe`: the innermost `_PyCFrame` (one per running
/// `_PyEval_EvalFrameDefault`, on that call's C stack).
pub const TSTATE_CFRAME: usize = 56;
/// `PyThreadState.root_cframe`: the thread's base `_PyCFrame`, not on a C stack.
pub const TSTATE_ROOT_CFRAME: usize = 336;

/// `_PyCFrame.current_frame`: the innermost Python frame of that evaluation.
pub const CFRAME_CURRENT_FRAME: usize = 8;
/// `_PyCFrame.previous`: the next outer `_PyCFrame`.
pub const CFRAME_PREVIOUS: usize = 16;

/// `_PyInterpreterFrame.f_code`.
pub const FRAME_CODE: usize = 32;
/// `_PyInterpreterFrame.previous`: the caller's Python frame.
pub const FRAME_PREVIOUS: usize = 48;
/// `_PyInterpreterFrame.prev_instr`: the code unit before the next instruction.
pub const FRAME_PREV_INSTR: usize = 56;
/// `_PyInterpreterFrame.is_entry`: the first frame its evaluation call ran.
pub const FRAME_IS_ENTRY: usize = 68;

/// `PyCodeObject.co_firstlineno` (an `int`).
pub const CODE_FIRST_LINE: usize = 72;
/// `PyCodeObject.co_filename`.
pub const CODE_FILENAME: usize = 112;
/// `PyCodeObject.co_qualname`.
pub const CODE_QUALNAME: usize = 128;
/// `PyCodeObject.co_linetable`.
pub const CODE_LINE_TABLE: usize = 136;
/// `PyCodeObject.co_code_adaptive`: the first code unit of the bytecode.
pub const CODE_BYTECODE: usize = 184;

/// `PyBytesObject.ob_sval`: the bytes themselves.
pub const BYTES_DATA: usize = 32;

/// `PyASCIIObject.length`: number of code points.
pub const STR_LENGTH: usize = 16;
/// `PyASCIIObject.state`: bit fields `interned:2 kind:3 compact:1 ascii:1`.
pub const STR_STATE: usize = 32;
/// Data of a compact ASCII string (`sizeof(PyASCIIObject)`).
pub const STR_ASCII_DATA: usize = 48;
/// Data of a compact non-ASCII string (`sizeof(PyCompactUnicodeObject)`).
pub const STR_COMPACT_DATA: usize = 72;

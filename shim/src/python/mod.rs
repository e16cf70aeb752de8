//! Python frames in native stacks, for CPython 3.11.
//!
//! A native stack through the interpreter shows only `_PyEval_EvalFrameDefault`
//! frames; the Python functions they were running are what a user wants to see.
//! Like memray, the shim puts them in place, but it reads them at allocation
//! time from the thread's own interpreter state, so the program runs no
//! Python code for it and its output cannot change:
//!
//! * the thread's `PyThreadState` (from `PyGILState_GetThisThreadState`, a
//!   thread-specific-data read) points to the innermost `_PyCFrame`; each
//!   running `_PyEval_EvalFrameDefault` keeps one among its locals on the C
//!   stack, linked to the next outer one;
//! * a `_PyCFrame`'s `current_frame` starts the chain of Python frames that
//!   evaluation is running, up to the one marked `is_entry`;
//! * so the native frame whose stack range holds a `_PyCFrame` is replaced by
//!   that evaluation's Python frames, innermost first. Matching by stack
//!   address needs no symbol (`_PyEval_EvalFrameDefault` has a `.cold` part).
//!
//! Each Python frame is a tagged stack entry ([`memshim_proto::PythonFrame`]);
//! each code object is described once ([`code::announce`]). Other Python
//! versions, or a process without Python, keep their native stacks.

mod code;
mod layout;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use memshim_proto::PythonFrame;

use crate::queue::Channel;
use crate::stack::{Frames, MAX_FRAMES};
use layout::*;

/// Most `_PyCFrame`s (nested evaluations) followed per stack.
const MAX_EVALUATIONS: usize = 64;
/// Most Python frames one evaluation contributes.
const MAX_FRAMES_PER_EVALUATION: usize = 256;

/// What the shim needs from the interpreter, found by [`detect`].
pub struct Runtime {
    this_thread_state: unsafe extern "C" fn() -> *mut c_void,
    code_type: usize,
    str_type: usize,
    bytes_type: usize,
}

static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// Looks for a CPython 3.11 interpreter among the loaded objects, once found
/// for good. Called at start and after each `dlopen`, off the hook path
/// (`dlsym` takes the loader's lock); must run under the guard.
pub fn detect() {
    if !RUNTIME.load(Ordering::Acquire).is_null() {
        return;
    }
    let Some(version) = symbol(c"Py_Version") else {
        return;
    };
    // SAFETY: `Py_Version` is a `const unsigned long` in every CPython >= 3.11.
    let version = unsafe { *(version as *const u64) };
    if version >> 16 != 0x030B {
        return;
    }
    let (Some(state), Some(code_type), Some(str_type), Some(bytes_type)) = (
        symbol(c"PyGILState_GetThisThreadState"),
        symbol(c"PyCode_Type"),
        symbol(c"PyUnicode_Type"),
        symbol(c"PyBytes_Type"),
    ) else {
        return;
    };
    let runtime = Box::new(Runtime {
        // SAFETY: the symbol is that function, with this signature.
        this_thread_state: unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn() -> *mut c_void>(state)
        },
        code_type,
        str_type,
        bytes_type,
    });
    RUNTIME.store(Box::into_raw(runtime), Ordering::Release);
}

fn symbol(name: &CStr) -> Option<usize> {
    // SAFETY: a lookup in the global scope; the name is NUL-terminated.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p as usize)
}

/// Whether Python frames can be merged in this process.
#[inline(always)]
pub fn is_active() -> bool {
    !RUNTIME.load(Ordering::Relaxed).is_null()
}

/// Writes `native` into `out` with each evaluation's native frame replaced by
/// its Python frames. `first_sight(id)` says whether a code object must still
/// be described; descriptions go to `channel`. Returns `false` (leaving `out`
/// unspecified) when the thread runs no Python code.
///
/// Must run under the guard, on the thread whose stack `native` is.
pub fn merge(
    native: &Frames,
    out: &mut Frames,
    mut first_sight: impl FnMut(u64) -> bool,
    channel: &Channel,
) -> bool {
    // SAFETY: a published runtime is never freed.
    let Some(rt) = (unsafe { RUNTIME.load(Ordering::Acquire).as_ref() }) else {
        return false;
    };
    let mut evaluations = [(0usize, 0usize); MAX_EVALUATIONS];
    // SAFETY: the thread's own interpreter state, which only this thread
    // changes, read as CPython 3.11 lays it out.
    let count = unsafe { evaluations_of((rt.this_thread_state)() as usize, &mut evaluations) };
    if count == 0 {
        return false;
    }
    let evaluations = &evaluations[..count];
    out.len = 0;
    let mut next = 0;
    for i in 0..native.len {
        if out.len >= MAX_FRAMES {
            break;
        }
        let (lo, hi) = (
            native.sps[i] as usize,
            native
                .sps
                .get(i + 1)
                .filter(|_| i + 1 < native.len)
                .map_or(usize::MAX, |&s| s as usize),
        );
        while next < count && lo != 0 && evaluations[next].0 < lo {
            next += 1;
        }
        if next < count && lo != 0 && evaluations[next].0 < hi {
            let frame = evaluations[next].1;
            next += 1;
            // SAFETY: as above; every code object's type is checked before use.
            if unsafe { push_python_frames(rt, frame, out, &mut first_sight, channel) } {
                continue;
            }
        }
        out.ips[out.len] = native.ips[i];
        out.sps[out.len] = native.sps[i];
        out.len += 1;
    }
    true
}

/// Fills `out` with (address of the `_PyCFrame`, its current Python frame),
/// innermost first; returns how many.
unsafe fn evaluations_of(tstate: usize, out: &mut [(usize, usize); MAX_EVALUATIONS]) -> usize {
    if tstate == 0 {
        return 0;
    }
    let root = tstate + TSTATE_ROOT_CFRAME;
    let mut cframe = read_u64(tstate + TSTATE_CFRAME) as usize;
    let mut n = 0;
    while cframe != 0 && cframe != root && cframe.is_multiple_of(8) && n < MAX_EVALUATIONS {
        out[n] = (cframe, read_u64(cframe + CFRAME_CURRENT_FRAME) as usize);
        n += 1;
        cframe = read_u64(cframe + CFRAME_PREVIOUS) as usize;
    }
    n
}

/// Appends the Python frames of one evaluation, from `frame` to its entry
/// frame; returns whether it appended any.
unsafe fn push_python_frames(
    rt: &Runtime,
    mut frame: usize,
    out: &mut Frames,
    first_sight: &mut impl FnMut(u64) -> bool,
    channel: &Channel,
) -> bool {
    let start = out.len;
    for _ in 0..MAX_FRAMES_PER_EVALUATION {
        if frame == 0 || !frame.is_multiple_of(8) || out.len >= MAX_FRAMES {
            break;
        }
        let code = read_u64(frame + FRAME_CODE) as usize;
        if code == 0 || !code.is_multiple_of(8) || read_u64(code + OB_TYPE) as usize != rt.code_type
        {
            break;
        }
        let id = code::id(code);
        if first_sight(id) {
            code::announce(rt, code, id, channel);
        }
        // A frame that has not started yet points before its first unit.
        let prev = read_u64(frame + FRAME_PREV_INSTR) as usize;
        let instruction = prev.saturating_sub(code + CODE_BYTECODE) / 2;
        out.ips[out.len] = PythonFrame {
            code: id,
            instruction: u32::try_from(instruction).unwrap_or(u32::MAX),
        }
        .encode();
        out.sps[out.len] = 0;
        out.len += 1;
        if *((frame + FRAME_IS_ENTRY) as *const u8) != 0 {
            break;
        }
        frame = read_u64(frame + FRAME_PREVIOUS) as usize;
    }
    out.len > start
}

/// Reads a `u64` from interpreter memory.
unsafe fn read_u64(addr: usize) -> u64 {
    (addr as *const u64).read_unaligned()
}

/// Reads a `u32` from interpreter memory.
unsafe fn read_u32(addr: usize) -> u32 {
    (addr as *const u32).read_unaligned()
}

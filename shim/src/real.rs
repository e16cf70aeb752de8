//! The real functions the shim forwards to, found with `dlsym(RTLD_NEXT, …)`.
//!
//! `RTLD_NEXT` (rather than glibc's `__libc_malloc`) keeps whatever allocator
//! the program would have used without the shim, jemalloc or tcmalloc included.
//! Resolution happens on first use, possibly before the shim's constructor; calls
//! made by `dlsym` itself while it runs are served by [`crate::bootstrap`].

use std::ffi::{c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use libc::{off_t, size_t};

use crate::thread_state::Guard;

/// Pointers to the functions the shim forwards to.
pub struct RealFns {
    pub malloc: unsafe extern "C" fn(size_t) -> *mut c_void,
    pub calloc: unsafe extern "C" fn(size_t, size_t) -> *mut c_void,
    pub realloc: unsafe extern "C" fn(*mut c_void, size_t) -> *mut c_void,
    pub free: unsafe extern "C" fn(*mut c_void),
    pub posix_memalign: unsafe extern "C" fn(*mut *mut c_void, size_t, size_t) -> c_int,
    pub aligned_alloc: unsafe extern "C" fn(size_t, size_t) -> *mut c_void,
    pub memalign: unsafe extern "C" fn(size_t, size_t) -> *mut c_void,
    pub valloc: unsafe extern "C" fn(size_t) -> *mut c_void,
    pub pvalloc: Option<unsafe extern "C" fn(size_t) -> *mut c_void>,
    pub malloc_usable_size: Option<unsafe extern "C" fn(*mut c_void) -> size_t>,
    pub mmap: unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
    pub mmap64:
        unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
    pub munmap: unsafe extern "C" fn(*mut c_void, size_t) -> c_int,
    pub mremap: unsafe extern "C" fn(*mut c_void, size_t, size_t, c_int, ...) -> *mut c_void,
    pub fork: unsafe extern "C" fn() -> libc::pid_t,
    pub exit: unsafe extern "C" fn(c_int) -> !,
    /// `_exit(2)` (`_Exit` is the same function in glibc).
    pub quick_exit: unsafe extern "C" fn(c_int) -> !,
    pub execve: ExecFn,
    pub execv: unsafe extern "C" fn(*const libc::c_char, *const *const libc::c_char) -> c_int,
    pub execvp: unsafe extern "C" fn(*const libc::c_char, *const *const libc::c_char) -> c_int,
    pub execvpe: ExecFn,
    pub libc_start_main: Option<LibcStartMain>,
    /// `dlclose(3)` (in libdl before glibc 2.34, hence optional).
    pub dlclose: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    /// `close(2)`.
    pub close: unsafe extern "C" fn(c_int) -> c_int,
    /// `close_range(2)` (glibc 2.34 and later).
    pub close_range: Option<unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int>,
    /// `closefrom(3)` (glibc 2.34 and later).
    pub closefrom: Option<unsafe extern "C" fn(c_int)>,
    /// `dup2(2)`.
    pub dup2: unsafe extern "C" fn(c_int, c_int) -> c_int,
    /// `dup3(2)` (glibc 2.9 and later).
    pub dup3: Option<unsafe extern "C" fn(c_int, c_int, c_int) -> c_int>,
}

/// `execve`/`execvpe`: path, argv, envp.
pub type ExecFn = unsafe extern "C" fn(
    *const libc::c_char,
    *const *const libc::c_char,
    *const *const libc::c_char,
) -> c_int;

/// The program's `main`.
pub type MainFn =
    unsafe extern "C" fn(c_int, *mut *mut libc::c_char, *mut *mut libc::c_char) -> c_int;

/// glibc's `__libc_start_main`.
pub type LibcStartMain = unsafe extern "C" fn(
    MainFn,
    c_int,
    *mut *mut libc::c_char,
    Option<unsafe extern "C" fn()>,
    Option<unsafe extern "C" fn()>,
    Option<unsafe extern "C" fn()>,
    *mut c_void,
) -> c_int;

static REAL: OnceLock<RealFns> = OnceLock::new();

/// The real functions, resolving them on first use.
///
/// Returns `None` only on the thread that is resolving them right now (its
/// nested allocations must then use the bootstrap arena).
#[inline(always)]
pub fn get() -> Option<&'static RealFns> {
    match REAL.get() {
        Some(r) => Some(r),
        None => resolve_slow(),
    }
}

/// The real functions if they are resolved already: the hooks' fast path,
/// which leaves resolution to their out-of-line twins.
#[inline(always)]
pub fn resolved() -> Option<&'static RealFns> {
    REAL.get()
}

#[cold]
fn resolve_slow() -> Option<&'static RealFns> {
    // If the guard is held, this thread is inside `resolve` (dlsym allocating).
    let _guard = Guard::enter()?;
    Some(REAL.get_or_init(resolve))
}

unsafe fn sym(name: &CStr) -> *mut c_void {
    libc::dlsym(libc::RTLD_NEXT, name.as_ptr())
}

/// Reinterprets a symbol address as the function-pointer type `F`.
///
/// # Safety
/// `F` must be a function pointer (or `Option` of one) whose signature is
/// the symbol's C signature.
unsafe fn cast<F: Copy>(p: *mut c_void) -> F {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
    std::mem::transmute_copy::<*mut c_void, F>(&p)
}

macro_rules! required {
    ($name:literal) => {{
        // SAFETY: dlsym is safe to call with a valid C string.
        let p = unsafe { sym($name) };
        if p.is_null() {
            missing($name);
        }
        // SAFETY: the symbol has the C signature of the field it is stored in.
        unsafe { cast(p) }
    }};
}

macro_rules! optional {
    ($name:literal) => {{
        // SAFETY: as above; a null pointer becomes `None`.
        unsafe { cast(sym($name)) }
    }};
}

fn resolve() -> RealFns {
    RealFns {
        malloc: required!(c"malloc"),
        calloc: required!(c"calloc"),
        realloc: required!(c"realloc"),
        free: required!(c"free"),
        posix_memalign: required!(c"posix_memalign"),
        aligned_alloc: required!(c"aligned_alloc"),
        memalign: required!(c"memalign"),
        valloc: required!(c"valloc"),
        pvalloc: optional!(c"pvalloc"),
        malloc_usable_size: optional!(c"malloc_usable_size"),
        mmap: required!(c"mmap"),
        mmap64: required!(c"mmap64"),
        munmap: required!(c"munmap"),
        mremap: required!(c"mremap"),
        fork: required!(c"fork"),
        exit: required!(c"exit"),
        quick_exit: required!(c"_exit"),
        execve: required!(c"execve"),
        execv: required!(c"execv"),
        execvp: required!(c"execvp"),
        execvpe: required!(c"execvpe"),
        libc_start_main: optional!(c"__libc_start_main"),
        dlclose: optional!(c"dlclose"),
        close: required!(c"close"),
        close_range: optional!(c"close_range"),
        closefrom: optional!(c"closefrom"),
        dup2: required!(c"dup2"),
        dup3: optional!(c"dup3"),
    }
}

/// A required symbol is missing: nothing sensible can run, say so and stop.
fn missing(name: &CStr) -> ! {
    let msg = b"memshim: cannot find the real ";
    // SAFETY: writing a static buffer to stderr; aborting is the only safe way out.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, name.as_ptr().cast(), name.count_bytes());
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::abort()
    }
}

//! `fork`, the `exec` family, `exit`, and `__libc_start_main` (to learn the
//! code `main` returns: glibc's own call to `exit` after `main` cannot be
//! interposed).

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::real::{self, MainFn};
use crate::recorder;
use crate::{errno, lifecycle};

/// Interposed `fork(2)`: the parent notes the child in its stream; the child
/// starts a stream of its own that inherits the parent's state.
#[no_mangle]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let Some(real) = real::get() else {
        return libc::syscall(libc::SYS_fork) as libc::pid_t;
    };
    let parent = libc::getpid() as u32;
    let pid = (real.fork)();
    if pid == 0 {
        lifecycle::after_fork_child(parent);
    } else if pid > 0 {
        errno::preserved(|| recorder::forked(pid));
    }
    pid
}

/// Interposed `execve(2)`: flushes the stream first.
#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    lifecycle::before_exec();
    match real::get() {
        Some(real) => (real.execve)(path, argv, envp),
        None => libc::syscall(libc::SYS_execve, path, argv, envp) as c_int,
    }
}

/// Interposed `execv(3)`.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    lifecycle::before_exec();
    match real::get() {
        Some(real) => (real.execv)(path, argv),
        None => -1,
    }
}

/// Interposed `execvp(3)`.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    lifecycle::before_exec();
    match real::get() {
        Some(real) => (real.execvp)(file, argv),
        None => -1,
    }
}

/// Interposed `execvpe(3)`.
#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    lifecycle::before_exec();
    match real::get() {
        Some(real) => (real.execvpe)(file, argv, envp),
        None => -1,
    }
}

/// Interposed `exit(3)`: remembers the code for the end of the stream.
#[no_mangle]
pub unsafe extern "C" fn exit(code: c_int) -> ! {
    lifecycle::set_exit_code(code);
    match real::get() {
        Some(real) => (real.exit)(code),
        None => exit_group(code),
    }
}

/// Interposed `_exit(2)`: no handlers run, so the stream is ended here
/// (what is queued is written, then the `End` with the code).
#[no_mangle]
pub unsafe extern "C" fn _exit(code: c_int) -> ! {
    lifecycle::before_quick_exit(code);
    match real::get() {
        Some(real) => (real.quick_exit)(code),
        None => exit_group(code),
    }
}

/// Interposed `_Exit(2)`: as [`_exit`].
#[no_mangle]
pub unsafe extern "C" fn _Exit(code: c_int) -> ! {
    _exit(code)
}

/// Ends the process with the system call itself (the real functions are
/// not resolved yet; `libc::_exit` would come back to the hook above).
unsafe fn exit_group(code: c_int) -> ! {
    loop {
        libc::syscall(libc::SYS_exit_group, code);
    }
}

static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn main_wrapper(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    // SAFETY: set to the program's `main` just before glibc calls this.
    let main: MainFn = std::mem::transmute::<usize, MainFn>(REAL_MAIN.load(Ordering::Relaxed));
    let code = main(argc, argv, envp);
    lifecycle::set_exit_code(code);
    code
}

/// Interposed `__libc_start_main`: runs the program's `main` through a wrapper
/// that records its return value.
#[no_mangle]
pub unsafe extern "C" fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: Option<unsafe extern "C" fn()>,
    fini: Option<unsafe extern "C" fn()>,
    rtld_fini: Option<unsafe extern "C" fn()>,
    stack_end: *mut c_void,
) -> c_int {
    lifecycle::ensure_init();
    let Some(start) = real::get().and_then(|r| r.libc_start_main) else {
        libc::abort();
    };
    REAL_MAIN.store(main as usize, Ordering::Relaxed);
    start(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end)
}

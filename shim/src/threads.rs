//! Starting the shim's own threads.
//!
//! They are created with `pthread_create` rather than `std::thread`: a shim
//! thread must take its guard before anything runs on it (std's start-up
//! allocates before the closure is called), and must start with every signal
//! blocked (the host's signals are for the host's threads).

use std::ffi::CStr;

type Body = Box<dyn FnOnce() + Send>;

/// What a new thread starts from: its name and what it runs.
struct Start {
    name: &'static CStr,
    body: Body,
}

/// Starts a detached thread named `name` that runs `body` with its guard
/// held for good and all signals blocked. Returns `false` if it could not start.
pub fn spawn_guarded(name: &'static CStr, body: Body) -> bool {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        crate::thread_state::guard_forever();
        // SAFETY: `arg` is the box leaked by `spawn_guarded`, handed over exactly once.
        let start = unsafe { Box::from_raw(arg.cast::<Start>()) };
        // Named from inside: one `prctl`, where naming it from the parent
        // (`pthread_setname_np`) opens and writes a file under /proc.
        // SAFETY: PR_SET_NAME reads a NUL-terminated string.
        unsafe { libc::prctl(libc::PR_SET_NAME, start.name.as_ptr()) };
        (start.body)();
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(Start { name, body }));
    // SAFETY: plain pthread and signal-mask calls with valid pointers; on
    // failure the box is reclaimed.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 * 1024);
        let mut thread: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut thread, &attr, start, arg.cast());
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc != 0 {
            drop(Box::from_raw(arg));
            return false;
        }
    }
    true
}

//! The program's `errno`, kept across the shim's own calls.
//!
//! The host must see the `errno` it would see without the shim, so every
//! system or library call the shim makes for itself (which may fail and set
//! it) runs inside [`preserved`].

/// Runs `f` and puts `errno` back as it was before.
#[inline]
pub fn preserved<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: errno is thread-local and always accessible.
    let saved = unsafe { *libc::__errno_location() };
    let result = f();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_call_inside_leaves_errno_as_it_was() {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = libc::EAGAIN };
        // SAFETY: closing a number that is not open fails with EBADF.
        let rc = preserved(|| unsafe { libc::close(-1) });
        assert_eq!(rc, -1);
        // SAFETY: this thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EAGAIN);
    }
}

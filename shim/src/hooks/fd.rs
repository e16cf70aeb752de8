//! `close`, `close_range`, `closefrom`, `dup2` and `dup3`: the program's
//! descriptor calls steer around the shim's own descriptors (see
//! [`crate::descriptors`] for why). Every other call goes straight through.

use std::ffi::{c_int, c_uint};

use crate::real;
use crate::{descriptors, errno, sender};

/// Fails the call as the kernel would for a descriptor that is not open.
unsafe fn bad_descriptor() -> c_int {
    *libc::__errno_location() = libc::EBADF;
    -1
}

unsafe fn real_close(fd: c_int) -> c_int {
    match real::get() {
        Some(real) => (real.close)(fd),
        None => libc::syscall(libc::SYS_close, fd) as c_int,
    }
}

unsafe fn real_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    match real::get().and_then(|r| r.close_range) {
        Some(close_range) => close_range(first, last, flags),
        None => libc::syscall(libc::SYS_close_range, first, last, flags) as c_int,
    }
}

/// Interposed `close(2)`: the shim's descriptors read as not open.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if descriptors::is_own(fd) {
        return bad_descriptor();
    }
    real_close(fd)
}

/// Interposed `close_range(2)`: closes the range around the shim's descriptors.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let mut from = first;
    for own in descriptors::own_sorted() {
        let Ok(own) = c_uint::try_from(own) else {
            break;
        };
        if own < from || own > last {
            continue;
        }
        if own > from {
            let rc = real_close_range(from, own - 1, flags);
            if rc != 0 {
                return rc;
            }
        }
        // `own` < `last` <= c_uint::MAX here, or the loop ends with `from` past `last`.
        from = own.saturating_add(1);
        if own == last {
            return 0;
        }
    }
    real_close_range(from, last, flags)
}

/// Interposed `closefrom(3)`: closes every descriptor from `lowfd` on but
/// the shim's.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let highest_own = descriptors::own_sorted()
        .into_iter()
        .filter(|&fd| fd >= lowfd.max(0))
        .max();
    let Some(highest_own) = highest_own else {
        return real_closefrom(lowfd);
    };
    errno::preserved(|| {
        if close_range(lowfd.max(0) as c_uint, highest_own as c_uint, 0) != 0 {
            // A kernel without close_range (before 5.9): one by one.
            for fd in lowfd.max(0)..highest_own {
                if !descriptors::is_own(fd) {
                    real_close(fd);
                }
            }
        }
    });
    real_closefrom(highest_own + 1);
}

unsafe fn real_closefrom(lowfd: c_int) {
    match real::get().and_then(|r| r.closefrom) {
        Some(closefrom) => closefrom(lowfd),
        None => {
            real_close_range(lowfd.max(0) as c_uint, c_uint::MAX, 0);
        }
    }
}

/// Before the program copies `oldfd` onto another number, `newfd`: `false`
/// if `oldfd` is one of the shim's (not open, as far as the program can
/// tell); the shim's descriptor at `newfd`, if any, moves aside.
unsafe fn make_way(oldfd: c_int, newfd: c_int) -> bool {
    if descriptors::is_own(oldfd) {
        return false;
    }
    if descriptors::is_own(newfd) {
        sender::vacate_descriptor(newfd);
    }
    true
}

/// Interposed `dup2(2)`: a program that makes one of the shim's numbers a
/// copy of its own gets it; the shim's descriptor moves elsewhere first.
#[no_mangle]
pub unsafe extern "C" fn dup2(oldfd: c_int, newfd: c_int) -> c_int {
    let ready = if oldfd == newfd {
        !descriptors::is_own(oldfd)
    } else {
        make_way(oldfd, newfd)
    };
    if !ready {
        return bad_descriptor();
    }
    match real::get() {
        Some(real) => (real.dup2)(oldfd, newfd),
        None => libc::syscall(libc::SYS_dup2, oldfd, newfd) as c_int,
    }
}

/// Interposed `dup3(2)`: as [`dup2`].
#[no_mangle]
pub unsafe extern "C" fn dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    // Equal numbers are EINVAL before anything else is looked at.
    if oldfd != newfd && !make_way(oldfd, newfd) {
        return bad_descriptor();
    }
    match real::get().and_then(|r| r.dup3) {
        Some(dup3) => dup3(oldfd, newfd, flags),
        None => libc::syscall(libc::SYS_dup3, oldfd, newfd, flags) as c_int,
    }
}

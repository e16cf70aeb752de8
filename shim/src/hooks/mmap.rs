//! `mmap`, `mmap64`, `munmap` and `mremap`.
//!
//! The C library's allocator maps memory through internal calls that do not
//! come here, so these see the program's own mappings (and other libraries').

use std::ffi::{c_int, c_void};

use libc::{off_t, size_t};

use crate::real;
use crate::recorder;

const MREMAP_DONTUNMAP: c_int = 4;

unsafe fn raw_mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void
}

#[inline(always)]
fn recorded(p: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int) -> *mut c_void {
    if p != libc::MAP_FAILED {
        recorder::mmap(p, len, prot, flags, fd);
    }
    p
}

type MmapFn = unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void;

/// The body of both `mmap` hooks: the real function `which` picks, recorded.
#[inline(always)]
unsafe fn hooked_mmap(
    which: fn(&real::RealFns) -> MmapFn,
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    match real::get() {
        Some(real) => recorded(
            which(real)(addr, len, prot, flags, fd, off),
            len,
            prot,
            flags,
            fd,
        ),
        None => raw_mmap(addr, len, prot, flags, fd, off),
    }
}

/// Interposed `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    hooked_mmap(|r| r.mmap, addr, len, prot, flags, fd, off)
}

/// Interposed `mmap64(2)` (the same call on 64-bit systems).
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    hooked_mmap(|r| r.mmap64, addr, len, prot, flags, fd, off)
}

/// Interposed `munmap(2)`: recorded before the real call (the range may be
/// handed out again the moment it returns).
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    match real::get() {
        Some(real) => {
            recorder::munmap(addr, len, false);
            (real.munmap)(addr, len)
        }
        None => libc::syscall(libc::SYS_munmap, addr, len) as c_int,
    }
}

/// Interposed `mremap(2)`. C declares it variadic; on the Linux ABIs the
/// optional fifth argument arrives exactly like a fixed one, so it is taken
/// as one and always passed on.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: size_t,
    new_len: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let Some(real) = real::get() else {
        return libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr)
            as *mut c_void;
    };
    let moves_old = flags & MREMAP_DONTUNMAP == 0;
    if moves_old {
        recorder::munmap(old, old_len, true);
    }
    let new = (real.mremap)(old, old_len, new_len, flags, new_addr);
    if new == libc::MAP_FAILED {
        if moves_old {
            // Failed: the old range is still mapped.
            recorder::remapped(old, old_len);
        }
    } else if moves_old {
        recorder::remapped(new, new_len);
    } else {
        // MREMAP_DONTUNMAP: the old range stays, emptied, and the pages
        // move to a new private anonymous range.
        recorder::mmap(
            new,
            new_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
        );
    }
    new
}

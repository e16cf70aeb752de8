//! The shim's own file descriptors, kept out of the program's way.
//!
//! The stream's socket (or trace file) and the duplicate the collector's
//! replies are read from stay open for the life of the process, in the
//! program's own descriptor table. A program that closes every descriptor
//! it did not open (daemons, `closefrom(3)`, a loop up to `_SC_OPEN_MAX`)
//! would close them, lose everything still queued, and then get the same
//! numbers back from `open` or `socket`: the shim would write its stream
//! into the program's files and connections. So:
//!
//! * they are moved near the top of the first 1024 descriptors (and below
//!   the soft `RLIMIT_NOFILE`), where the kernel's lowest-free rule hands
//!   numbers out last;
//! * `close` answers `EBADF` for them without closing, and `close_range`
//!   and `closefrom` close around them: the program sees what it would see
//!   without the shim, a number that is not open;
//! * `dup2`/`dup3` onto one of them first moves the shim's descriptor to
//!   another number, then lets the program have that one.
//!
//! A forked child closes its copies of the parent's (its stream, if it
//! records, gets descriptors of its own). A `vfork` child shares the
//! parent's memory but has its own descriptor table: there the numbers are
//! not the shim's, and its calls go through untouched.

use std::sync::atomic::{AtomicI32, Ordering};

/// The stream's socket or trace file.
pub const SINK: usize = 0;
/// The duplicate of the collector's socket that its replies are read from.
pub const REPLY: usize = 1;

/// The shim's descriptors, by role (-1: none).
static OWN: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
/// The process whose descriptor table holds them.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

/// How far below the top of the range the shim's descriptors go.
const RESERVE: u64 = 64;
/// The range whose top they go near: the default soft limit, so that a
/// process with a huge limit does not grow its descriptor table (8 bytes a
/// slot, in the kernel) for the shim's sake.
const RANGE: u64 = 1024;

/// The lowest number the shim's descriptors may take.
fn high_base() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        RANGE
    };
    soft.min(RANGE).saturating_sub(RESERVE).max(3) as i32
}

/// A close-on-exec duplicate of `fd` at a high number, or -1: where the
/// shim's descriptors go, and move to in [`vacate`].
pub fn duplicate_high(fd: i32) -> i32 {
    // SAFETY: fcntl on any number is safe; it fails on a closed one.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high_base()) };
    if high >= 0 {
        return high;
    }
    // Every high number is taken: anywhere will do.
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) }
}

/// Closes `fd` with the system call itself (the `close` hook would refuse
/// a descriptor of the shim's).
fn close_raw(fd: i32) {
    // SAFETY: closing a descriptor this module owns.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Makes `fd` the shim's descriptor for `role`: moved to a high number
/// (the old one is closed) and close-on-exec. Returns the number to use.
pub fn adopt(fd: i32, role: usize) -> i32 {
    let high = duplicate_high(fd);
    let own = if high >= 0 {
        close_raw(fd);
        high
    } else {
        fd
    };
    register(own, role);
    own
}

/// Makes a high, close-on-exec copy of `fd` the shim's descriptor for
/// `role` (the reply descriptor: a copy of the stream's socket). Without a
/// free number, the role stays without a descriptor.
pub fn adopt_copy(fd: i32, role: usize) {
    let copy = duplicate_high(fd);
    if copy >= 0 {
        register(copy, role);
    }
}

fn register(fd: i32, role: usize) {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.store(unsafe { libc::getpid() }, Ordering::Release);
    OWN[role].store(fd, Ordering::Release);
}

/// The shim's descriptor for `role`, if it has one.
pub fn get(role: usize) -> Option<i32> {
    let fd = OWN[role].load(Ordering::Acquire);
    (fd >= 0).then_some(fd)
}

/// Whether `fd` is one of the shim's descriptors.
#[inline]
pub fn is_own(fd: i32) -> bool {
    fd >= 0 && OWN.iter().any(|own| own.load(Ordering::Acquire) == fd) && in_owner()
}

/// Whether this process is the one whose table holds the shim's
/// descriptors (not a `vfork` child running on the parent's memory).
fn in_owner() -> bool {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.load(Ordering::Acquire) == unsafe { libc::getpid() }
}

/// The shim's descriptors in increasing order, then -1s.
pub fn own_sorted() -> [i32; 2] {
    if !in_owner() {
        return [-1, -1];
    }
    let mut fds = [SINK, REPLY].map(|role| OWN[role].load(Ordering::Acquire));
    fds.sort_unstable_by_key(|&fd| if fd < 0 { i32::MAX } else { fd });
    fds
}

/// Frees the number `fd` (one of the shim's) for the program's `dup2`:
/// moves the shim's descriptor elsewhere with `move_to`, which gets the
/// role and returns the new number (or -1 to give the number up).
pub fn vacate(fd: i32, move_to: impl FnOnce(usize) -> i32) {
    let Some(role) = [SINK, REPLY]
        .into_iter()
        .find(|&role| OWN[role].load(Ordering::Acquire) == fd)
    else {
        return;
    };
    let moved = move_to(role);
    OWN[role].store(moved, Ordering::Release);
    close_raw(fd);
}

/// Closes and forgets the shim's descriptor for `role`, if any.
pub fn release(role: usize) {
    let fd = OWN[role].swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        close_raw(fd);
    }
}

/// In a forked child: the parent's descriptors belong to the parent's
/// stream. Closes them and forgets them.
pub fn release_after_fork() {
    release(SINK);
    release(REPLY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_descriptor_moves_high_and_is_known_until_vacated() {
        let mut fds = [0; 2];
        // SAFETY: a valid two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let own = adopt(fds[1], REPLY);
        assert!(own >= high_base(), "moved to {own}");
        assert!(is_own(own) && !is_own(fds[1]) && !is_own(-1));
        // The old number is closed, the new one close-on-exec.
        // SAFETY: fcntl queries.
        unsafe {
            assert_eq!(libc::fcntl(fds[1], libc::F_GETFD), -1);
            assert_eq!(libc::fcntl(own, libc::F_GETFD), libc::FD_CLOEXEC);
        }
        vacate(own, |_| duplicate_high(own));
        let moved = get(REPLY).expect("moved");
        assert_ne!(moved, own);
        assert!(is_own(moved) && !is_own(own));
        // SAFETY: fcntl query.
        assert_eq!(unsafe { libc::fcntl(own, libc::F_GETFD) }, -1);
        release_after_fork();
        assert_eq!(get(REPLY), None);
        // SAFETY: fcntl query; closing our pipe's other end.
        unsafe {
            assert_eq!(libc::fcntl(moved, libc::F_GETFD), -1);
            libc::close(fds[0]);
        }
    }
}

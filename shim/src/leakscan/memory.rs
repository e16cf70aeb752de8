//! Reading the process's own memory without ever faulting.
//!
//! At exit other threads may still run and unmap memory; a plain load from a
//! block freed meanwhile could crash the host. `process_vm_readv` on our own
//! pid copies what is mapped and reports where it stopped instead.

/// Reads `buf.len()` bytes from `addr`; returns how many could be read (a
/// short count means an unmapped or unreadable page).
pub fn read(addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec is our buffer; the remote one is only read, by the kernel.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n.max(0) as usize
}

/// Reads the aligned 64-bit word at `addr`, if it is readable.
pub fn word(addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    (addr.is_multiple_of(8) && read(addr, &mut b) == 8).then(|| u64::from_ne_bytes(b))
}

const CHUNK: usize = 1 << 16;
const PAGE: u64 = 4096;

/// Calls `f(word)` for every aligned word of `[start, end)` that is readable,
/// skipping unreadable pages. Returns the number of bytes read.
pub fn for_each_word(start: u64, end: u64, buf: &mut Vec<u8>, mut f: impl FnMut(u64)) -> u64 {
    buf.resize(CHUNK, 0);
    let mut at = start.next_multiple_of(8);
    let mut total = 0;
    while at < end {
        let want = ((end - at) as usize).min(CHUNK);
        let got = read(at, &mut buf[..want]);
        for w in buf[..got - got % 8].chunks_exact(8) {
            f(u64::from_ne_bytes(w.try_into().expect("8 bytes")));
        }
        total += got as u64;
        at += got as u64;
        if got < want {
            // Unreadable: skip to the next page.
            at = (at + 1).next_multiple_of(PAGE);
        }
    }
    total
}

//! Where the exit scan starts: the roots, as LeakSanitizer defines them.
//!
//! * the writable data of every loaded object (`.data`, `.bss`), less its
//!   RELRO part (read-only by then) and less the shim's own;
//! * the exiting thread's stack above the frame that called the scan, and
//!   the whole stacks of the program's other live threads;
//! * the exiting thread's static thread-local storage and thread control block.
//!
//! Unlike memcheck, memory the program mapped itself with `mmap` is not a root.

use std::ffi::{c_int, c_void};

/// A root range `[start, end)`.
pub type Range = (u64, u64);

/// The writable, non-RELRO segments of every object but the one containing `own`.
pub fn module_data(own: u64) -> Vec<Range> {
    let mut out: (Vec<Range>, u64) = (Vec::new(), own);
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        let (out, own) = &mut *(data as *mut (Vec<Range>, u64));
        let info = &*info;
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        let bias = info.dlpi_addr;
        let loads = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        if loads
            .clone()
            .any(|p| (bias + p.p_vaddr..bias + p.p_vaddr + p.p_memsz).contains(own))
        {
            return 0;
        }
        let relro = phdrs
            .iter()
            .find(|p| p.p_type == libc::PT_GNU_RELRO)
            .map(|p| (bias + p.p_vaddr, bias + p.p_vaddr + p.p_memsz));
        for p in loads.filter(|p| p.p_flags & libc::PF_W != 0) {
            let (mut lo, hi) = (bias + p.p_vaddr, bias + p.p_vaddr + p.p_memsz);
            if let Some((rlo, rhi)) = relro {
                if rlo <= lo && rhi > lo {
                    lo = rhi.min(hi);
                }
            }
            if lo < hi {
                out.push((lo, hi));
            }
        }
        0
    }
    // SAFETY: the callback only reads the program headers it is handed.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut (Vec<Range>, u64)).cast()) };
    out.0
}

/// Size of struct pthread and the TCB header scanned above the thread pointer.
const TCB_SCAN: u64 = 2304;

/// The calling thread's static thread-local storage and control block: from
/// the lowest TLS block of a loaded object, just below the thread pointer, to
/// the end of glibc's `struct pthread` above it.
///
/// The start is not the thread pointer less glibc's static TLS size: that
/// size counts the control block too, so the range would begin below the
/// thread's TLS allocation, in whatever memory precedes it (the shim's own
/// heap can map there, and its copy of the live set would make every block
/// reachable).
pub fn own_tls() -> Option<Range> {
    type StaticInfo = unsafe extern "C" fn(*mut usize, *mut usize);
    // SAFETY: a lookup by name; the symbol, when present, has this signature
    // (glibc exports it for sanitizers, which use it the same way).
    let info = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr()) };
    if info.is_null() {
        return None;
    }
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: as above; two valid out-pointers.
    unsafe { std::mem::transmute::<*mut c_void, StaticInfo>(info)(&mut size, &mut align) };
    let tp = thread_pointer()?;
    let lowest = lowest_tls_block(tp.saturating_sub(size as u64), tp).unwrap_or(tp);
    Some((lowest, tp + TCB_SCAN))
}

/// The lowest of the calling thread's module TLS blocks within `[lo, hi)`
/// (the static ones; a dynamically allocated block lies elsewhere).
fn lowest_tls_block(lo: u64, hi: u64) -> Option<u64> {
    let mut state: (u64, u64, Option<u64>) = (lo, hi, None);
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        let (lo, hi, lowest) = &mut *(data as *mut (u64, u64, Option<u64>));
        let block = (*info).dlpi_tls_data as u64;
        if (*lo..*hi).contains(&block) {
            *lowest = Some(lowest.map_or(block, |l| l.min(block)));
        }
        0
    }
    // SAFETY: the callback only reads the TLS address of the info it is handed.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            (&mut state as *mut (u64, u64, Option<u64>)).cast(),
        )
    };
    state.2
}

#[cfg(target_arch = "x86_64")]
fn thread_pointer() -> Option<u64> {
    let tp: u64;
    // SAFETY: on x86-64 Linux %fs:0 holds the thread control block's own address.
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    Some(tp)
}

#[cfg(not(target_arch = "x86_64"))]
fn thread_pointer() -> Option<u64> {
    None
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn thread_local_storage_range_holds_the_threads_variables_and_starts_at_a_block() {
        let (lo, hi) = own_tls().expect("glibc gives the static TLS size");
        // SAFETY: returns the address of this thread's errno, in libc's TLS block.
        let errno = unsafe { libc::__errno_location() } as u64;
        assert!(
            (lo..hi).contains(&errno),
            "{errno:#x} outside {lo:#x}..{hi:#x}"
        );
        let tp = thread_pointer().unwrap();
        assert!((lo..hi).contains(&tp));
        assert_eq!(
            lowest_tls_block(lo, tp),
            Some(lo),
            "starts at the lowest block"
        );
        assert!(
            tp - lo < 64 * 1024,
            "{:#x} bytes below the thread pointer",
            tp - lo
        );
    }
}

//! `malloc` and its family.
//!
//! Until the real functions are resolved (only while `dlsym` runs), blocks
//! come from the bootstrap arena; they are never recorded and never passed to
//! the real allocator.
//!
//! The hot hooks (`malloc`, `calloc`, `realloc`, `free`) decide first, from
//! the size or the address alone, whether the call can go unrecorded (when
//! sampling, nearly always: see [`sampler::skip`] and
//! [`sampled_set::surely_unsampled`]). Such a call ends in a tail call of the
//! real function: no stack frame, a dozen instructions. Anything else is a
//! tail call of the hook's out-of-line `*_recorded` twin, so that the fast
//! path saves no register either.

use std::ffi::{c_int, c_void};

use libc::size_t;

use crate::bootstrap;
use crate::queue::RawKind;
use crate::real;
use crate::recorder;
use crate::sampled_set;
use crate::sampler;

#[inline(always)]
fn recorded(p: *mut c_void, size: usize, kind: RawKind) -> *mut c_void {
    if !p.is_null() {
        recorder::alloc(p, size, kind);
    }
    p
}

/// Interposed `malloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: size_t) -> *mut c_void {
    match real::resolved() {
        Some(real) if sampler::skip(size) => (real.malloc)(size),
        _ => malloc_recorded(size),
    }
}

#[inline(never)]
unsafe extern "C" fn malloc_recorded(size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => recorded((real.malloc)(size), size, RawKind::Malloc),
        None => bootstrap::alloc(size, 16).cast(),
    }
}

/// Interposed `calloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn calloc(nmemb: size_t, size: size_t) -> *mut c_void {
    match real::resolved() {
        Some(real) if sampler::skip(nmemb.wrapping_mul(size)) => (real.calloc)(nmemb, size),
        _ => calloc_recorded(nmemb, size),
    }
}

#[inline(never)]
unsafe extern "C" fn calloc_recorded(nmemb: size_t, size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => recorded(
            (real.calloc)(nmemb, size),
            nmemb.wrapping_mul(size),
            RawKind::Calloc,
        ),
        None => match nmemb.checked_mul(size) {
            Some(total) => bootstrap::alloc(total, 16).cast(),
            None => std::ptr::null_mut(),
        },
    }
}

/// Interposed `realloc(3)`: a release of the old block (recorded before the
/// real call) and an allocation of the new one (recorded after).
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: size_t) -> *mut c_void {
    match real::resolved() {
        Some(real)
            if !bootstrap::contains(ptr.cast())
                && (ptr.is_null() || sampled_set::surely_unsampled(ptr as u64))
                && sampler::skip(size) =>
        {
            (real.realloc)(ptr, size)
        }
        _ => realloc_recorded(ptr, size),
    }
}

#[inline(never)]
unsafe extern "C" fn realloc_recorded(ptr: *mut c_void, size: size_t) -> *mut c_void {
    let Some(real) = real::get() else {
        return realloc_bootstrap(ptr, size, None);
    };
    if bootstrap::contains(ptr.cast()) {
        return realloc_bootstrap(ptr, size, Some(real));
    }
    if ptr.is_null() {
        return recorded((real.realloc)(ptr, size), size, RawKind::Realloc);
    }
    let old_recorded = recorder::free(ptr, true);
    let new = (real.realloc)(ptr, size);
    if !new.is_null() {
        recorder::alloc(new, size, RawKind::Realloc);
    } else if size != 0 && old_recorded {
        // Failed: the old block is untouched and still the program's.
        recorder::realloc_failed(ptr);
    }
    new
}

/// `realloc` of a bootstrap block (or before resolution): copy it out.
unsafe fn realloc_bootstrap(
    ptr: *mut c_void,
    size: size_t,
    real: Option<&real::RealFns>,
) -> *mut c_void {
    let new: *mut c_void = match real {
        Some(real) => recorded((real.malloc)(size), size, RawKind::Realloc),
        None => bootstrap::alloc(size, 16).cast(),
    };
    if !new.is_null() && !ptr.is_null() {
        let old_size = bootstrap::size_of(ptr.cast());
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast::<u8>(), old_size.min(size));
    }
    new
}

/// Interposed `reallocarray(3)`: `realloc` with an overflow check.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(
    ptr: *mut c_void,
    nmemb: size_t,
    size: size_t,
) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(total) => realloc(ptr, total),
        None => {
            *libc::__errno_location() = libc::ENOMEM;
            std::ptr::null_mut()
        }
    }
}

/// Interposed `free(3)`: recorded before the real release, so that no other
/// thread can be handed the same address before the collector hears of it.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // `free(NULL)` may take the fast path: the real one ignores it too.
    match real::resolved() {
        Some(real)
            if !bootstrap::contains(ptr.cast()) && sampled_set::surely_unsampled(ptr as u64) =>
        {
            (real.free)(ptr)
        }
        _ => free_recorded(ptr),
    }
}

#[inline(never)]
unsafe extern "C" fn free_recorded(ptr: *mut c_void) {
    if ptr.is_null() || bootstrap::contains(ptr.cast()) {
        return;
    }
    if let Some(real) = real::get() {
        recorder::free(ptr, false);
        (real.free)(ptr);
    }
}

/// Interposed `posix_memalign(3)`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    let Some(real) = real::get() else {
        let p = bootstrap::alloc(size, align);
        if p.is_null() {
            return libc::ENOMEM;
        }
        *memptr = p.cast();
        return 0;
    };
    let rc = (real.posix_memalign)(memptr, align, size);
    if rc == 0 {
        recorded(*memptr, size, RawKind::Aligned);
    }
    rc
}

/// Interposed `aligned_alloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => recorded((real.aligned_alloc)(align, size), size, RawKind::Aligned),
        None => bootstrap::alloc(size, align).cast(),
    }
}

/// Interposed `memalign(3)`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => recorded((real.memalign)(align, size), size, RawKind::Aligned),
        None => bootstrap::alloc(size, align).cast(),
    }
}

/// Interposed `valloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => recorded((real.valloc)(size), size, RawKind::Aligned),
        None => bootstrap::alloc(size, 4096).cast(),
    }
}

/// Interposed `pvalloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    match real::get() {
        Some(real) => match real.pvalloc {
            Some(pvalloc) => recorded(pvalloc(size), size, RawKind::Aligned),
            None => recorded(
                (real.valloc)(size.next_multiple_of(4096)),
                size,
                RawKind::Aligned,
            ),
        },
        None => bootstrap::alloc(size.next_multiple_of(4096), 4096).cast(),
    }
}

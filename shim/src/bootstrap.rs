//! A tiny bump allocator for the moments before the real `malloc` is known.
//!
//! Resolving the real functions with `dlsym` may itself call `malloc` or
//! `calloc`; those calls are served from this static arena. Its blocks are
//! never reused (so `calloc` memory is already zero), `free` of one is a
//! no-op, and `realloc` of one copies it out to the real allocator.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

const ARENA_SIZE: usize = 256 * 1024;
const ALIGN: usize = 16;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: disjoint ranges are handed out by an atomic bump pointer.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Allocates `size` bytes aligned to `align` (at least 16) from the arena,
/// or returns null when it is exhausted. A block's size is stored in the
/// 16 bytes before it, for `realloc`.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(ALIGN);
    let base = ARENA.0.get() as usize;
    let mut cur = NEXT.load(Ordering::Relaxed);
    loop {
        let start = (base + cur + ALIGN).next_multiple_of(align);
        let end = start - base + size;
        if size > ARENA_SIZE || end > ARENA_SIZE {
            return std::ptr::null_mut();
        }
        match NEXT.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                let p = start as *mut u8;
                // SAFETY: [start - 16, start + size) lies inside the arena and is ours.
                unsafe { (p.sub(ALIGN) as *mut usize).write(size) };
                return p;
            }
            Err(actual) => cur = actual,
        }
    }
}

/// Whether `p` points into the arena.
#[inline(always)]
pub fn contains(p: *const u8) -> bool {
    let base = ARENA.0.get() as usize;
    (p as usize).wrapping_sub(base) < ARENA_SIZE
}

/// Size recorded for an arena block.
///
/// # Safety
/// `p` must have been returned by [`alloc`].
pub unsafe fn size_of(p: *const u8) -> usize {
    (p.sub(ALIGN) as *const usize).read()
}

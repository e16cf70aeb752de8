//! The shim's own Rust allocations go straight to the real allocator.
//!
//! They must never be recorded, and must never re-enter the hooks: the
//! global allocator calls the resolved real functions directly (or the
//! bootstrap arena while they are being resolved).

use std::alloc::{GlobalAlloc, Layout};

use crate::{bootstrap, real};

/// Routes Rust's `alloc`/`dealloc` inside the shim to the real `malloc`/`free`.
pub struct RealAllocator;

const MALLOC_ALIGN: usize = 16;

unsafe impl GlobalAlloc for RealAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match real::get() {
            Some(r) if layout.align() <= MALLOC_ALIGN => (r.malloc)(layout.size()).cast(),
            Some(r) => (r.memalign)(layout.align(), layout.size()).cast(),
            None => bootstrap::alloc(layout.size(), layout.align()),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if bootstrap::contains(ptr) {
            return;
        }
        if let Some(r) = real::get() {
            (r.free)(ptr.cast());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match real::get() {
            Some(r) if layout.align() <= MALLOC_ALIGN && !bootstrap::contains(ptr) => {
                (r.realloc)(ptr.cast(), new_size).cast()
            }
            _ => {
                let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

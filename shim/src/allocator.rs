//! The shim's own heap: dlmalloc over pages mapped for the shim alone.
//!
//! The shim's Rust allocations (a thread's unwinder state, stack
//! definitions, encoder buffers, module lists) must never be recorded and
//! never re-enter the hooks. They must not come from the program's allocator
//! either: a block of the shim's placed between the program's blocks changes
//! where the program's next blocks go. A program that grows a buffer with
//! `realloc`, which glibc does in place at the top of the heap, had its
//! buffers copied instead once the shim's first capture put its unwinder
//! state there: the sampled `realloc` benchmark ran 1.6x slower than without
//! the shim, for 5% of time spent in the shim itself. Taking the shim's
//! memory elsewhere also keeps `mallinfo2` (the heap figures in every
//! report) about the program's memory only, and keeps the shim off the
//! program's arena locks.
//!
//! So the shim has a heap of its own: `dlmalloc` (the Rust port of Doug
//! Lea's allocator that the standard library uses on wasm) over anonymous
//! mappings made with the raw system call, which no hook sees and no
//! allocator shares. One lock serializes it. The shim allocates only off the
//! hot path (set-up, first sight of a stack, the sender's frames), so the
//! lock is seldom contended; a waiter spins briefly, then yields. `fork`
//! takes the lock in its prepare handler (registered before the shim's
//! first allocation), so that the child never inherits it held by a thread
//! that does not exist there.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

use crate::errno;

/// The shim's global allocator (see the module docs).
pub struct ShimAllocator;

/// The dlmalloc instance and its lock.
struct Heap {
    locked: AtomicBool,
    dlmalloc: UnsafeCell<Dlmalloc<ShimPages>>,
}

// SAFETY: `dlmalloc` is only touched with `locked` held.
unsafe impl Sync for Heap {}

static HEAP: Heap = Heap {
    locked: AtomicBool::new(false),
    dlmalloc: UnsafeCell::new(Dlmalloc::new_with_allocator(ShimPages)),
};

/// Whether the `fork` handlers are registered.
static FORK_SAFE: AtomicBool = AtomicBool::new(false);

impl Heap {
    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Runs `f` on the dlmalloc instance, under the lock.
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Dlmalloc<ShimPages>) -> T) -> T {
        if !FORK_SAFE.load(Ordering::Acquire) {
            register_fork_handlers();
        }
        self.lock();
        // SAFETY: the lock is held.
        let result = f(unsafe { &mut *self.dlmalloc.get() });
        self.unlock();
        result
    }
}

#[cold]
fn register_fork_handlers() {
    extern "C" fn prepare() {
        HEAP.lock();
    }
    extern "C" fn release() {
        HEAP.unlock();
    }
    if !FORK_SAFE.swap(true, Ordering::AcqRel) {
        // SAFETY: registers plain functions; pthread_atfork does not call
        // back into this allocator. If it fails, a fork while another thread
        // allocates could leave the child's lock held: the same risk as
        // before registration, and nothing better can be done.
        unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
    }
}

unsafe impl GlobalAlloc for ShimAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.with(|d| d.malloc(layout.size(), layout.align()))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP.with(|d| d.calloc(layout.size(), layout.align()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.with(|d| d.free(ptr, layout.size(), layout.align()))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.with(|d| d.realloc(ptr, layout.size(), layout.align(), new_size))
    }
}

/// Pages for the shim's heap: anonymous mappings made with raw system calls,
/// so that no hook records them and `errno` is never touched.
struct ShimPages;

/// A raw `mmap`/`mremap`/`munmap` system call; `None` on failure.
fn raw_syscall(number: libc::c_long, args: [usize; 5]) -> Option<usize> {
    // SAFETY: the system call only acts on the mappings named by its arguments.
    let r = errno::preserved(|| unsafe {
        libc::syscall(number, args[0], args[1], args[2], args[3], args[4], 0usize)
    });
    (r != -1).then_some(r as usize)
}

// SAFETY: hands out fresh private anonymous mappings (zeroed, page-aligned)
// and only remaps or unmaps what it handed out.
unsafe impl dlmalloc::Allocator for ShimPages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize;
        match raw_syscall(libc::SYS_mmap, [0, size, prot, flags, usize::MAX]) {
            Some(addr) => (addr as *mut u8, size, 0),
            None => (std::ptr::null_mut(), 0, 0),
        }
    }

    fn remap(&self, ptr: *mut u8, oldsize: usize, newsize: usize, can_move: bool) -> *mut u8 {
        let flags = if can_move { libc::MREMAP_MAYMOVE } else { 0 } as usize;
        raw_syscall(libc::SYS_mremap, [ptr as usize, oldsize, newsize, flags, 0])
            .map_or(std::ptr::null_mut(), |addr| addr as *mut u8)
    }

    fn free_part(&self, ptr: *mut u8, oldsize: usize, newsize: usize) -> bool {
        raw_syscall(libc::SYS_mremap, [ptr as usize, oldsize, newsize, 0, 0]).is_some()
            || raw_syscall(
                libc::SYS_munmap,
                [ptr as usize + newsize, oldsize - newsize, 0, 0, 0],
            )
            .is_some()
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        raw_syscall(libc::SYS_munmap, [ptr as usize, size, 0, 0, 0]).is_some()
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_kept_across_growth() {
        let layouts = [(24, 8), (100, 16), (4096, 64), (300_000, 4096), (1, 1)];
        let blocks: Vec<(*mut u8, Layout)> = layouts
            .iter()
            .map(|&(size, align)| {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size.
                let p = unsafe { ShimAllocator.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "aligned to {align}");
                // SAFETY: `p` holds `size` bytes.
                unsafe { std::ptr::write_bytes(p, size as u8, size) };
                (p, layout)
            })
            .collect();
        for (i, &(p, layout)) in blocks.iter().enumerate() {
            // SAFETY: each block was filled with its own size's low byte.
            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == layout.size() as u8), "block {i}");
        }
        let (p, layout) = blocks[1];
        // SAFETY: `p` was allocated with `layout`.
        let grown = unsafe { ShimAllocator.realloc(p, layout, 1 << 20) };
        // SAFETY: the first 100 bytes were copied.
        assert!(unsafe { std::slice::from_raw_parts(grown, 100) }
            .iter()
            .all(|&b| b == 100));
        let zeroed_layout = Layout::from_size_align(1 << 16, 16).unwrap();
        // SAFETY: a non-zero size.
        let zeroed = unsafe { ShimAllocator.alloc_zeroed(zeroed_layout) };
        // SAFETY: `zeroed` holds 64 KiB.
        assert!(unsafe { std::slice::from_raw_parts(zeroed, 1 << 16) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: each pointer is freed once, with its layout.
        unsafe {
            ShimAllocator.dealloc(zeroed, zeroed_layout);
            ShimAllocator.dealloc(grown, Layout::from_size_align(1 << 20, 16).unwrap());
            for (i, &(p, layout)) in blocks.iter().enumerate() {
                if i != 1 {
                    ShimAllocator.dealloc(p, layout);
                }
            }
        }
    }
}

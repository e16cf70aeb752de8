// Known Rust allocations: Vec growth, Box, String, HashMap, all freed, plus a
// known leak: a forgotten Vec<u64> with capacity 500 (4000 bytes) and a leaked
// Box<[u8; 1000]> (1000 bytes). A counting global allocator keeps the
// program's own tally of everything that goes through the Rust allocator,
// which (with the System allocator) maps one to one onto malloc/calloc/
// realloc/posix_memalign/free. Never writes to stdout (its buffer would be a
// heap block alive at exit).
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};

struct Counting;
static BLOCKS_ALLOCATED: AtomicI64 = AtomicI64::new(0);
static BLOCKS_FREED: AtomicI64 = AtomicI64::new(0);
static BYTES_ALLOCATED: AtomicI64 = AtomicI64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

fn on_alloc(n: usize) {
    BLOCKS_ALLOCATED.fetch_add(1, SeqCst);
    BYTES_ALLOCATED.fetch_add(n as i64, SeqCst);
    LIVE_BLOCKS.fetch_add(1, SeqCst);
    let live = LIVE_BYTES.fetch_add(n as i64, SeqCst) + n as i64;
    PEAK_BYTES.fetch_max(live, SeqCst);
}
fn on_free(n: usize) {
    BLOCKS_FREED.fetch_add(1, SeqCst);
    LIVE_BLOCKS.fetch_sub(1, SeqCst);
    LIVE_BYTES.fetch_sub(n as i64, SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() { on_alloc(l.size()); }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() { on_alloc(l.size()); }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        on_free(l.size());
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        on_free(l.size());
        let q = unsafe { System.realloc(p, l, n) };
        if !q.is_null() { on_alloc(n); }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[inline(never)]
fn churn() -> u64 {
    let mut sum = 0u64;
    let mut v: Vec<u32> = Vec::new();
    for i in 0..10_000u32 {
        v.push(i);
    }
    sum += v.iter().map(|&x| x as u64).sum::<u64>();
    let mut m: HashMap<u32, String> = HashMap::new();
    for i in 0..500u32 {
        m.insert(i, format!("value number {i}"));
    }
    sum += m.values().map(|s| s.len() as u64).sum::<u64>();
    for i in 0..100usize {
        let b = std::hint::black_box(Box::new([i as u8; 64]));
        sum += b[3] as u64;
    }
    sum
}

#[inline(never)]
fn leak() {
    let mut v: Vec<u64> = Vec::with_capacity(500);
    v.push(42);
    std::mem::forget(std::hint::black_box(v));
    let b: &'static mut [u8; 1000] = Box::leak(Box::new([7u8; 1000]));
    std::hint::black_box(b);
}

fn main() {
    let sum = churn();
    leak();
    eprintln!(
        "{{\"tally\":1,\"program\":\"rust_leaks\",\"pid\":{},\"ppid\":0,\"blocks_allocated\":{},\"blocks_freed\":{},\"bytes_allocated\":{},\"live_bytes\":{},\"live_blocks\":{},\"peak_bytes\":{},\"base_blocks_allocated\":0,\"base_blocks_freed\":0,\"base_bytes_allocated\":0,\"sum\":{}}}",
        std::process::id(),
        BLOCKS_ALLOCATED.load(SeqCst),
        BLOCKS_FREED.load(SeqCst),
        BYTES_ALLOCATED.load(SeqCst),
        LIVE_BYTES.load(SeqCst),
        LIVE_BLOCKS.load(SeqCst),
        PEAK_BYTES.load(SeqCst),
        sum
    );
    std::process::exit(0);
}

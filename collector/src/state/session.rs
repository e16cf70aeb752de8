//! The state of one process image, rebuilt from its event stream.

use rustc_hash::FxHashMap as HashMap;
use std::cell::OnceCell;
use std::sync::Arc;

use memshim_proto::{
    Alloc, AllocKind, EndReason, Event, Free, Hello, LiveSet, Mmap, Munmap, StackId, Stats,
};
use serde::{Deserialize, Serialize};

use super::distribution::Distribution;
use super::heap::{Heap, SHORT_LIVED_MS};
use super::histogram::Log2Histogram;
use super::latest::LatestAllocs;
use super::leaks::LeakScanState;
use super::live::{LiveBlock, LiveBlocks};
use super::mmaps::Mappings;
use super::modules::ModuleMap;
use super::rate::RateSeries;
use super::series::TICK_NS;
use super::sites::SiteIndex;
use super::summary::Summary;
use super::timeline::{Sample, Timeline};

/// How a process (image) ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// The stream is still open.
    Running,
    /// Orderly exit with this code.
    Code(i32),
    /// Killed by this signal (known from `waitpid`).
    Signal(i32),
    /// Orderly exit whose code the shim could not see (e.g. `exit` from inside libc).
    Exited,
    /// The stream stopped without an end event: abnormal death.
    Cut,
    /// The image was replaced by `exec`.
    Exec,
}

/// Event counters of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `malloc`, `calloc` and aligned allocations.
    pub alloc_calls: u64,
    /// `free` calls of known blocks and unknown addresses alike (not realloc's frees).
    pub free_calls: u64,
    /// `realloc` calls that returned a block.
    pub realloc_calls: u64,
    /// Every block handed out, realloc's included.
    pub blocks_allocated: u64,
    /// Every known block released, realloc's included.
    pub blocks_freed: u64,
    /// Requested bytes over the run, realloc's new sizes included.
    pub bytes_allocated: u64,
    /// Frees of addresses that were not live.
    pub unknown_frees: u64,
    /// Allocations of an address that was already live (the older block is replaced).
    pub duplicate_allocs: u64,
    /// Events the shim reports it dropped.
    pub lost_events: u64,
}

/// What went wrong in a stream that decoded fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A second `Hello` inside one stream.
    SecondHello,
    /// A leak scan whose length is not that of the live set sent for it.
    ScanMismatch,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::SecondHello => write!(f, "protocol error: a second Hello in one stream"),
            ProtocolError::ScanMismatch => {
                write!(
                    f,
                    "protocol error: a leak scan that does not match the live set sent"
                )
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The state a forked child starts from: its parent's, at the fork.
#[derive(Debug, Clone)]
pub struct ForkSnapshot {
    live: LiveBlocks,
    mappings: Mappings,
    modules: ModuleMap,
    stacks: HashMap<StackId, Arc<[u64]>>,
}

/// A block released by `realloc`, kept until the thread's next event tells
/// whether the `realloc` failed.
#[derive(Debug, Clone, Copy)]
struct PendingRealloc {
    addr: u64,
    block: LiveBlock,
    site: SiteIndex,
}

/// The rebuilt state of one process image.
#[derive(Debug, Clone)]
pub struct Session {
    hello: Hello,
    heap: Heap,
    mappings: Mappings,
    modules: ModuleMap,
    stacks: HashMap<StackId, Arc<[u64]>>,
    counters: Counters,
    pending_realloc: HashMap<u32, PendingRealloc>,
    latest_stats: Option<Stats>,
    timeline: Timeline,
    rate: RateSeries,
    /// The process's size and lifetime distributions, merged from the sites'
    /// when asked for; reset by any event that changes a site's.
    summary: OnceCell<Summary>,
    latest: LatestAllocs,
    next_tick_ns: u64,
    end: Option<EndReason>,
    closed: bool,
    exit_override: Option<Exit>,
    last_ts: u64,
    leaks: LeakScanState,
}

impl Session {
    /// A session for a freshly started image.
    pub fn new(hello: Hello) -> Self {
        let heap = Heap::sampled(hello.sample_bytes);
        Session {
            hello,
            heap,

            mappings: Mappings::default(),
            modules: ModuleMap::default(),
            stacks: HashMap::default(),
            counters: Counters::default(),
            pending_realloc: HashMap::default(),
            latest_stats: None,
            timeline: Timeline::default(),
            rate: RateSeries::default(),
            summary: OnceCell::new(),
            latest: LatestAllocs::default(),
            next_tick_ns: 0,
            end: None,
            closed: false,
            exit_override: None,
            last_ts: 0,
            leaks: LeakScanState::default(),
        }
    }

    /// A session for a forked child that starts from its parent's state.
    pub fn forked(hello: Hello, snapshot: ForkSnapshot) -> Self {
        let mut s = Session::new(hello);
        s.heap = Heap::inherit(snapshot.live, s.hello.sample_bytes);
        s.mappings = snapshot.mappings;
        s.modules = snapshot.modules;
        s.stacks = snapshot.stacks;
        s
    }

    /// A copy of the state a child forked now inherits.
    pub fn fork_snapshot(&self) -> ForkSnapshot {
        let mut live = self.heap.live().clone();
        // A realloc in flight on another thread still owns its old block.
        for p in self.pending_realloc.values() {
            live.insert(p.addr, p.block);
        }
        ForkSnapshot {
            live,
            mappings: self.mappings.clone(),
            modules: self.modules.clone(),
            stacks: self.stacks.clone(),
        }
    }

    /// Applies one event of the stream.
    pub fn apply(&mut self, mut event: Event) -> Result<(), ProtocolError> {
        self.apply_in_place(&mut event)
    }

    /// Applies one event of the stream, taking what it owns (a stack's
    /// frames, a module) out of it: `event` is left as an empty [`Event::Lost`].
    ///
    /// For a caller that holds a batch of events: allocations and frees,
    /// nearly every event of a stream, are read where they are. Moving each
    /// 120-byte `Event` out of the batch instead cost two copies per event
    /// and a store-forwarding stall on the second.
    #[inline]
    pub fn apply_in_place(&mut self, event: &mut Event) -> Result<(), ProtocolError> {
        match event {
            Event::Alloc(a) => {
                self.end = None;
                self.alloc(a);
                Ok(())
            }
            Event::Free(f) => {
                self.end = None;
                self.free(f);
                Ok(())
            }
            other => self.apply_other(std::mem::replace(other, Event::Lost { count: 0 })),
        }
    }

    /// Whether `f`, next in the stream after `a`, frees that block on the
    /// same thread (not as part of a `realloc`): a pair for [`Session::apply_pair`].
    #[inline]
    pub fn is_pair(a: &Alloc, f: &Free) -> bool {
        f.addr == a.addr && f.tid == a.tid && !f.realloc
    }

    /// Applies an allocation and, next in the stream, the free of that
    /// block by the same thread: the same as applying one then the other.
    ///
    /// Most blocks of an allocation-heavy program live that briefly (a
    /// buffer, a temporary string). When the block replaces nothing and
    /// sets no new peak, and no tick of the site series falls between the
    /// two, the heap ends as it began: the block then never enters the live
    /// set, which saves its insertion and removal, the largest part of the
    /// collector's work for such a pair.
    #[inline]
    pub fn apply_pair(&mut self, a: &Alloc, f: &Free) {
        debug_assert!(Session::is_pair(a, f));
        self.end = None;
        self.touch(a.ts);
        let transient = a.kind != AllocKind::Realloc
            && f.ts < self.next_tick_ns
            && self.pending_realloc.is_empty()
            && self.heap.sample_mean() == 0
            && self.heap.is_transient(a.addr, a.size);
        if !transient {
            self.alloc(a);
            self.free(f);
            return;
        }
        let site = self.heap.site_index(a.stack);
        self.count_alloc(a, site);
        self.heap.pass_through(site, a.stack);
        self.touch(f.ts);
        self.counters.free_calls += 1;
        self.counters.blocks_freed += 1;
        let block = LiveBlock {
            size: a.size,
            usable: a.usable_size,
            stack: a.stack,
            ts: a.ts,
            chain: 0,
        };
        self.retire(f, &block, site);
    }

    #[inline(never)]
    fn apply_other(&mut self, event: Event) -> Result<(), ProtocolError> {
        // Any event the program caused after `End(Exec)` means the exec
        // failed: the image goes on. Statistics and the lost count are the
        // shim's own bookkeeping (earlier shims could write them after the
        // `End`): they say nothing about that.
        if !matches!(event, Event::End(_) | Event::Stats(_) | Event::Lost { .. }) {
            self.end = None;
        }
        match event {
            Event::Hello(_) => return Err(ProtocolError::SecondHello),
            Event::Module(m) => {
                self.touch(m.ts);
                self.modules.load(m);
            }
            Event::ModuleUnloaded { ts, base } => {
                self.touch(ts);
                self.modules.unload(base);
            }
            Event::Stack(def) => {
                self.stacks.insert(def.id, def.frames.into());
            }
            Event::PythonCode(code) => self.modules.load_python_code(code),
            Event::Alloc(a) => self.alloc(&a),
            Event::Free(f) => self.free(&f),
            Event::ReallocFailed { ts, tid, addr } => self.realloc_failed(ts, tid, addr),
            Event::Mmap(m) => self.mmap(m),
            Event::Munmap(m) => self.munmap(m),
            Event::Forked { ts, .. } => self.touch(ts),
            Event::Stats(s) => self.stats(s),
            Event::Lost { count } => self.lost(count),
            Event::ScanRequest { ts } => self.touch(ts),
            Event::LeakScan(scan) => {
                self.touch(scan.ts);
                if !self.leaks.record(scan) {
                    return Err(ProtocolError::ScanMismatch);
                }
            }
            Event::End(e) => {
                self.touch(e.ts);
                self.lost(e.lost_events);
                self.settle_all_pending();
                self.end = Some(e.reason);
            }
        }
        Ok(())
    }

    /// Builds the live set for the exit scan the process asked for and hands
    /// it to `send`, to be sent back to the process.
    pub fn scan_request(&mut self, send: impl FnOnce(&LiveSet)) {
        self.leaks.request(self.heap.live(), send);
    }

    /// The exit scan's result, if the process sent one.
    pub fn leaks(&self) -> &LeakScanState {
        &self.leaks
    }

    /// Marks the stream as finished (end of file or read error).
    pub fn close(&mut self) {
        self.settle_all_pending();
        self.closed = true;
    }

    /// Overrides how the session is reported to have ended.
    pub fn set_exit(&mut self, exit: Exit) {
        self.exit_override = Some(exit);
    }

    /// Whether the stream stopped without the shim's `End` although the
    /// process went on to exit normally (as `waitpid` told): recording
    /// stopped early (the program closed the stream's descriptor with a raw
    /// system call, say), and what happened after the cut is missing.
    pub fn stream_cut_early(&self) -> bool {
        self.end.is_none() && self.closed && matches!(self.exit(), Exit::Code(_) | Exit::Exited)
    }

    /// How the session ended so far.
    pub fn exit(&self) -> Exit {
        if let Some(exit) = self.exit_override {
            return exit;
        }
        match (self.end, self.closed) {
            (Some(EndReason::Exit(code)), _) => Exit::Code(code),
            (Some(EndReason::ExitCodeUnknown), _) => Exit::Exited,
            (Some(EndReason::Exec), _) => Exit::Exec,
            (None, true) => Exit::Cut,
            (None, false) => Exit::Running,
        }
    }

    #[inline]
    fn touch(&mut self, ts: u64) {
        self.last_ts = self.last_ts.max(ts);
        if ts >= self.next_tick_ns {
            self.tick(ts);
        }
    }

    /// Samples every site's live bytes: once per [`TICK_NS`] of process time.
    #[cold]
    fn tick(&mut self, ts: u64) {
        self.heap.sample_sites(ts / 1_000_000);
        self.next_tick_ns = (ts / TICK_NS + 1) * TICK_NS;
    }

    /// Resolves the thread's pending realloc: `failed_addr` is the address of
    /// a `ReallocFailed` event, `None` for any other event of the thread.
    #[inline]
    fn settle_pending(&mut self, tid: u32, ts: u64, failed_addr: Option<u64>) {
        if let Some(p) = self.take_pending(tid) {
            self.settle(p, ts, failed_addr);
        }
    }

    /// The thread's pending realloc, removed.
    #[inline]
    fn take_pending(&mut self, tid: u32) -> Option<PendingRealloc> {
        if self.pending_realloc.is_empty() {
            return None;
        }
        self.pending_realloc.remove(&tid)
    }

    fn settle(&mut self, p: PendingRealloc, ts: u64, failed_addr: Option<u64>) {
        if failed_addr == Some(p.addr) {
            self.counters.blocks_freed -= 1;
            if self.heap.insert_at(p.addr, p.block, p.site).is_some() {
                self.counters.duplicate_allocs += 1;
            }
        } else {
            self.record_lifetime(&p.block, p.site, ts);
        }
    }

    fn settle_all_pending(&mut self) {
        let pending: Vec<PendingRealloc> = self.pending_realloc.drain().map(|(_, p)| p).collect();
        for p in pending {
            self.record_lifetime(&p.block, p.site, self.last_ts);
        }
    }

    #[inline]
    fn record_lifetime(&mut self, block: &LiveBlock, site: SiteIndex, ts: u64) {
        let ms = ts.saturating_sub(block.ts) / 1_000_000;
        self.summary_changes();
        let site = self.heap.site_at(site);
        site.lifetimes_ms.record(ms);
        site.lifetime_dist.record(ms);
        site.freed_blocks += 1;
        if ms < SHORT_LIVED_MS {
            site.short_lived += 1;
        }
    }

    /// The chain length of a block `realloc` returns at `site`: one more than
    /// the block the thread's pending `realloc` released, `old`.
    fn realloc_chain(&mut self, a: &Alloc, site: SiteIndex, old: &LiveBlock) -> u32 {
        let chain = old.chain.saturating_add(1);
        let site = self.heap.site_at(site);
        if a.size > old.size {
            site.realloc_grows += 1;
            site.realloc_copied_bytes += old.size;
        }
        site.max_chain = site.max_chain.max(chain);
        chain
    }

    #[inline]
    fn alloc(&mut self, a: &Alloc) {
        self.touch(a.ts);
        let site = self.heap.site_index(a.stack);
        let pending = self.take_pending(a.tid);
        let mut chain = 0;
        if let Some(p) = pending {
            if a.kind == AllocKind::Realloc {
                chain = self.realloc_chain(a, site, &p.block);
            }
            self.settle(p, a.ts, None);
        }
        self.count_alloc(a, site);
        let block = LiveBlock {
            size: a.size,
            usable: a.usable_size,
            stack: a.stack,
            ts: a.ts,
            chain,
        };
        if self.heap.insert_at(a.addr, block, site).is_some() {
            self.counters.duplicate_allocs += 1;
        }
    }

    /// What every allocation counts, whether its block enters the live set
    /// ([`Session::alloc`]) or not ([`Session::apply_pair`]): the rate, the
    /// thread's latest block, the counters and the figures of its site.
    #[inline]
    fn count_alloc(&mut self, a: &Alloc, site: SiteIndex) {
        self.rate.record(a.ts, a.size);
        self.summary_changes();
        self.latest.allocated(a.tid, a.addr);
        let c = &mut self.counters;
        if a.kind == AllocKind::Realloc {
            c.realloc_calls += 1;
        } else {
            c.alloc_calls += 1;
        }
        c.bytes_allocated += a.size;
        c.blocks_allocated += 1;
        let sample_mean = self.heap.sample_mean();
        let s = self.heap.site_at(site);
        if sample_mean != 0 {
            s.estimates_mut().on_alloc(a.size, sample_mean);
        }
        s.alloc_calls += 1;
        s.bytes_allocated += a.size;
        s.sizes.record(a.size);
        s.size_dist.record(a.size);
    }

    /// What the end of a block of `site`, freed by `f` (not by a `realloc`),
    /// counts: a temporary if it was its thread's latest, and its lifetime.
    #[inline]
    fn retire(&mut self, f: &Free, block: &LiveBlock, site: SiteIndex) {
        if self.latest.freed(f.tid, f.addr) {
            self.heap.site_at(site).temporary += 1;
        }
        self.record_lifetime(block, site, f.ts);
    }

    #[inline]
    fn free(&mut self, f: &Free) {
        self.touch(f.ts);
        self.settle_pending(f.tid, f.ts, None);
        if !f.realloc {
            self.counters.free_calls += 1;
        }
        let Some((block, site)) = self.heap.remove_at(f.addr) else {
            if f.addr != 0 {
                self.counters.unknown_frees += 1;
            }
            return;
        };
        self.counters.blocks_freed += 1;
        if f.realloc {
            self.pending_realloc.insert(
                f.tid,
                PendingRealloc {
                    addr: f.addr,
                    block,
                    site,
                },
            );
        } else {
            self.retire(f, &block, site);
        }
    }

    fn realloc_failed(&mut self, ts: u64, tid: u32, addr: u64) {
        self.touch(ts);
        self.settle_pending(tid, ts, Some(addr));
    }

    fn mmap(&mut self, m: Mmap) {
        self.touch(m.ts);
        self.settle_pending(m.tid, m.ts, None);
        if m.remap {
            self.mappings.remap(m.tid, m.addr, m.len);
        } else {
            let anonymous = m.fd < 0 || m.flags & libc::MAP_ANONYMOUS != 0;
            self.mappings.map(m.addr, m.len, anonymous);
        }
    }

    fn munmap(&mut self, m: Munmap) {
        self.touch(m.ts);
        self.settle_pending(m.tid, m.ts, None);
        if m.remap {
            self.mappings.unmap_for_remap(m.tid, m.addr, m.len);
        } else {
            self.mappings.unmap(m.addr, m.len);
        }
    }

    fn stats(&mut self, s: Stats) {
        self.touch(s.ts);
        self.timeline.record(Sample {
            t_ms: s.ts / 1_000_000,
            rss_bytes: s.rss_bytes,
            heap_bytes: s.heap_bytes,
            live_bytes: self.heap.live_bytes(),
            heap_in_use_bytes: s.heap_in_use_bytes,
            usable_bytes: self.heap.live_usable(),
            mmap_bytes: self.mappings.live_bytes(),
        });
        self.latest_stats = Some(s);
    }

    fn lost(&mut self, count: u64) {
        self.counters.lost_events = self.counters.lost_events.max(count);
    }

    /// Who is speaking.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The live heap and the sites.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// The mapped ranges.
    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// The modules, for symbolization.
    pub fn modules(&self) -> &ModuleMap {
        &self.modules
    }

    /// The frames of an interned stack, if its definition arrived.
    pub fn stack(&self, id: StackId) -> Option<&Arc<[u64]>> {
        self.stacks.get(&id)
    }

    /// The event counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latest statistics sample.
    pub fn latest_stats(&self) -> Option<&Stats> {
        self.latest_stats.as_ref()
    }

    /// The statistics time series.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The allocation rate over time.
    pub fn rate(&self) -> &RateSeries {
        &self.rate
    }

    /// Requested sizes of every allocation: log2 buckets and percentiles.
    pub fn sizes(&self) -> (&Log2Histogram, &Distribution) {
        let (buckets, dist) = &self.summary().sizes;
        (buckets, dist)
    }

    /// Lifetimes (ms) of every released block: log2 buckets and percentiles.
    pub fn lifetimes(&self) -> (&Log2Histogram, &Distribution) {
        let (buckets, dist) = &self.summary().lifetimes;
        (buckets, dist)
    }

    fn summary(&self) -> &Summary {
        self.summary
            .get_or_init(|| Summary::of(self.heap.sites().iter_by_index().map(|(_, s)| s)))
    }

    /// A site's sizes or lifetimes are about to change: the summary is out of date.
    #[inline]
    fn summary_changes(&mut self) {
        if self.summary.get().is_some() {
            self.summary = OnceCell::new();
        }
    }

    /// Blocks released by a `realloc` whose outcome is not known yet (still live).
    pub fn pending_reallocs(&self) -> usize {
        self.pending_realloc.len()
    }

    /// Nanoseconds since start of the latest event.
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }
}

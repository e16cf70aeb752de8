//! The report: its data model (the JSON contract), how it is built from the
//! registry, and how it is rendered as text.
//!
//! * [`analysis`]: the analysis sections of the model (distributions, peak, growth, …).
//! * [`analyze`]: a session → the analysis sections.
//! * [`build`]: registry → [`Report`], symbolizing only the sites shown.
//! * [`text`], [`text_analysis`]: [`Report`] → human-readable text.
//! * [`units`]: human sizes, counts and durations.

pub mod analysis;
pub mod analyze;
pub mod build;
pub mod early;
pub mod estimates;
pub mod leaks;
pub mod text;
pub mod text_analysis;
pub mod units;

pub use analysis::{
    AllocationRate, Fragmentation, Growth, Histogram, Peak, PeakOwner, Recommendation, SiteRef,
    SiteWaste, Usage,
};

use serde::{Deserialize, Serialize};

use crate::state::timeline::Sample;
use crate::state::Exit;

/// Version of the JSON report format.
pub const REPORT_VERSION: u32 = 1;

/// A whole report: `{ "version", "processes": [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// One entry per process image, by start time.
    pub processes: Vec<ProcessReport>,
}

/// Everything reported about one process image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// The parent pid when this image is a forked child that inherited its parent's heap.
    pub forked_from: Option<u32>,
    /// Command line, arguments joined by spaces.
    pub command: String,
    /// Path of the executable.
    pub exe: String,
    /// `{"code": N}`, `{"signal": N}`, `"exited"` (code unknown), `"cut"`, `"exec"` or `"running"`.
    pub exit: Exit,
    /// The process exited normally (`exit`, from `waitpid`) but its stream
    /// had stopped before: what happened after the cut is missing.
    #[serde(default)]
    pub stream_cut_early: bool,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Milliseconds from start to the last event (to now while running).
    pub duration_ms: u64,
    /// Mean bytes between samples (0: every call was recorded).
    pub sample_bytes: u64,
    /// Whole-process counters.
    pub totals: Totals,
    /// Leak classes of the blocks live at exit, from the exit scan (all zero
    /// when no scan ran: see `leak_scan`).
    pub leaks: Leaks,
    /// Sampled mode: unbiased estimates of the totals, ± 99 % (the exact
    /// counters then count samples only).
    #[serde(default)]
    pub estimate: Option<estimates::Estimates>,
    /// The exit scan itself: whether it ran, and what it cost.
    #[serde(default)]
    pub leak_scan: Option<LeakScanInfo>,
    /// The suppressions that matched in this process, most bytes first.
    #[serde(default)]
    pub suppressions_used: Vec<SuppressionUse>,
    /// Sites holding definitely, indirectly or possibly lost blocks that no
    /// suppression silenced, most lost bytes first (at most `--top`).
    #[serde(default)]
    pub leak_sites: Vec<SiteReport>,
    /// Blocks still allocated when the process ended (zero while it runs).
    pub live_at_exit: Amount,
    /// Number of distinct allocation sites.
    pub site_count: usize,
    /// The top sites by live bytes, then bytes allocated.
    pub sites: Vec<SiteReport>,
    /// The top sites by bytes allocated, then live bytes.
    pub sites_by_bytes_allocated: Vec<SiteReport>,
    /// Sites whose live bytes grow steadily or spiked, worst first (stable sites are not listed).
    pub growth: Vec<Growth>,
    /// How the allocator's footprint compares with what the program asked for.
    pub fragmentation: Fragmentation,
    /// Suggested changes, largest estimated saving first.
    pub recommendations: Vec<Recommendation>,
    /// Memory over time, from the shim's periodic statistics.
    pub timeline: Vec<Sample>,
    /// The process peak and the sites that held it.
    #[serde(default)]
    pub peak: Peak,
    /// Requested sizes of every allocation.
    #[serde(default)]
    pub size_histogram: Histogram,
    /// Lifetimes (ms) of every freed block; live blocks are censored.
    #[serde(default)]
    pub lifetime_histogram: Histogram,
    /// Allocations per second over time.
    #[serde(default)]
    pub allocation_rate: AllocationRate,
    /// Memory by module: the module of each site's first frame outside the C/C++ runtime.
    #[serde(default)]
    pub by_module: Vec<Usage>,
    /// Memory by user category (`--categories FILE`), empty without one.
    #[serde(default)]
    pub categories: Vec<Usage>,
    /// What `groups` are grouped by (`--group`), if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<crate::analysis::grouping::GroupBy>,
    /// Every site summed by its attributed function, source file or module
    /// (`--group`), the top `--top` groups; empty without `--group`.
    #[serde(default)]
    pub groups: Vec<crate::analysis::grouping::Group>,
}

/// Whole-process counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// `malloc`, `calloc` and aligned allocations.
    pub alloc_calls: u64,
    /// `free` calls (realloc's frees excluded).
    pub free_calls: u64,
    /// `realloc` calls that returned a block.
    pub realloc_calls: u64,
    /// Blocks handed out, realloc's included.
    pub blocks_allocated: u64,
    /// Known blocks released, realloc's included.
    pub blocks_freed: u64,
    /// Requested bytes over the run.
    pub bytes_allocated: u64,
    /// Highest live heap bytes.
    pub peak_bytes: u64,
    /// Milliseconds since start when the peak was reached.
    pub peak_at_ms: u64,
    /// Requested bytes live now (at exit once ended).
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Bytes mapped by the program with `mmap`, anonymous and file-backed.
    pub mmap_live_bytes: u64,
    /// Of which anonymous.
    pub mmap_anonymous_bytes: u64,
    /// Of which file-backed.
    pub mmap_file_bytes: u64,
    /// Distinct mapped ranges.
    pub mmap_ranges: usize,
    /// Events the shim could not deliver: the numbers above undercount by that much.
    pub lost_events: u64,
    /// Nanoseconds the program's threads waited for room in the shim's
    /// queue (lossless back-pressure, included in the run time); 0 if they
    /// never did.
    pub queue_wait_ns: u64,
    /// Frees of addresses that were not live.
    pub unknown_frees: u64,
    /// Allocations returning an address that was already live.
    pub duplicate_allocs: u64,
    /// Latest resident set size, if the shim sent statistics.
    pub rss_bytes: Option<u64>,
}

/// A number of bytes in a number of blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
}

/// What the exit leak scan cost in the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakScanInfo {
    /// Time the scan took, in milliseconds.
    pub duration_ms: f64,
    /// Bytes of roots read (module data, stacks, TLS).
    pub root_bytes: u64,
    /// Bytes of heap blocks read.
    pub heap_bytes: u64,
}

/// Leak classes, valgrind-style.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaks {
    /// No pointer to the block anywhere.
    pub definitely: Amount,
    /// Reachable only from definitely lost blocks.
    pub indirectly: Amount,
    /// Reachable only through interior pointers.
    pub possibly: Amount,
    /// Still pointed to at exit.
    pub reachable: Amount,
    /// Blocks of any class that a suppression silenced (`--suppressions`,
    /// and the default set): not counted in the four classes above.
    #[serde(default)]
    pub suppressed: Amount,
}

impl Leaks {
    /// Definitely + indirectly + possibly lost.
    pub fn lost(&self) -> Amount {
        Amount {
            bytes: self.definitely.bytes + self.indirectly.bytes + self.possibly.bytes,
            blocks: self.definitely.blocks + self.indirectly.blocks + self.possibly.blocks,
        }
    }
}

/// How much one suppression silenced in a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionUse {
    /// The suppression's name.
    pub name: String,
    /// Where it is defined (`FILE:LINE`).
    pub origin: String,
    /// Sites it matched.
    pub sites: u64,
    /// Bytes it silenced.
    pub bytes: u64,
    /// Blocks it silenced.
    pub blocks: u64,
}

/// One allocation site (a unique stack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    /// The stack id, in hex.
    pub id: String,
    /// The stack, innermost first (empty if its definition never arrived).
    pub frames: Vec<Frame>,
    /// Allocations made here (realloc included).
    pub alloc_calls: u64,
    /// Bytes requested here.
    pub bytes_allocated: u64,
    /// Bytes live from here now (at exit once ended).
    pub live_bytes: u64,
    /// Blocks live from here.
    pub live_blocks: u64,
    /// This site's live bytes at the moment of the process peak.
    pub peak_bytes: u64,
    /// Set when the process ended with blocks from here still live.
    pub leak: Option<SiteLeak>,
    /// Requested sizes: percentiles and log2 buckets.
    pub size_histogram: Histogram,
    /// Lifetimes of freed blocks in milliseconds; live blocks are censored.
    pub lifetime_histogram: Histogram,
    /// Usable bytes (`malloc_usable_size`) of the live blocks.
    #[serde(default)]
    pub usable_bytes: u64,
    /// Internal fragmentation of the live blocks: `usable_bytes - live_bytes`.
    #[serde(default)]
    pub internal_fragmentation_bytes: u64,
    /// Blocks released (realloc's included).
    #[serde(default)]
    pub freed_blocks: u64,
    /// Blocks freed by their thread before it allocated anything else.
    #[serde(default)]
    pub temporary_allocs: u64,
    /// Blocks freed within 100 ms of their allocation.
    #[serde(default)]
    pub short_lived_allocs: u64,
    /// Mean allocations per second over the process's life.
    #[serde(default)]
    pub allocs_per_second: f64,
    /// `realloc`s here that grew a block.
    #[serde(default)]
    pub realloc_grows: u64,
    /// Longest chain of reallocs of one block ending here.
    #[serde(default)]
    pub max_realloc_chain: u32,
    /// Module the site is attributed to (first frame outside the C/C++ runtime).
    #[serde(default)]
    pub module: Option<String>,
    /// User category (`--categories`), when one matched.
    #[serde(default)]
    pub category: Option<String>,
    /// Sampled mode: unbiased estimates of this site's totals, ± 99 %.
    #[serde(default)]
    pub estimate: Option<estimates::Estimates>,
}

/// What a site left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLeak {
    /// The site's most severe leak class (`"definitely"`, `"indirectly"`,
    /// `"possibly"`, `"reachable"`), or `"live_at_exit"` when the process
    /// ended without an exit scan (killed, or a trace file).
    pub class: String,
    /// Bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
    /// Bytes and blocks of every class, when the exit scan ran.
    #[serde(default)]
    pub classes: Option<Leaks>,
    /// The suppression that matched this site, if any. When every block of
    /// the site was suppressed, `class` is `"suppressed"` (a fully suppressed site).
    #[serde(default)]
    pub suppressed_by: Option<String>,
}

/// One symbolized frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Function name, demangled; `"??"` when unknown.
    pub function: String,
    /// Source file, when debug information says.
    pub file: Option<String>,
    /// Source line, when debug information says.
    pub line: Option<u32>,
    /// Path of the module (executable or library), when known.
    pub module: Option<String>,
    /// The return address, in hex.
    pub address: String,
}

#[cfg(test)]
impl Frame {
    /// A frame of `function` in `module`, without file or line, for tests.
    pub(crate) fn for_test(function: &str, module: &str) -> Frame {
        Frame {
            function: function.into(),
            file: None,
            line: None,
            module: Some(module.into()),
            address: "0x1".into(),
        }
    }
}

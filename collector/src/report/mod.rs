//! The report: its data model (the JSON contract), how it is built from the
//! registry, and how it is rendered as text.
//!
//! * [`build`]: registry → [`Report`], symbolizing only the sites shown.
//! * [`text`]: [`Report`] → human-readable text.
//! * [`units`]: human sizes, counts and durations.

pub mod build;
pub mod text;
pub mod units;

use serde::{Deserialize, Serialize};

use crate::state::histogram::Bucket;
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
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Milliseconds from start to the last event (to now while running).
    pub duration_ms: u64,
    /// Mean bytes between samples (0: every call was recorded).
    pub sample_bytes: u64,
    /// Whole-process counters.
    pub totals: Totals,
    /// Leak classes (classification comes later: all zero for now).
    pub leaks: Leaks,
    /// Blocks still allocated when the process ended (zero while it runs).
    pub live_at_exit: Amount,
    /// Number of distinct allocation sites.
    pub site_count: usize,
    /// The top sites by live bytes, then bytes allocated.
    pub sites: Vec<SiteReport>,
    /// The top sites by bytes allocated, then live bytes.
    pub sites_by_bytes_allocated: Vec<SiteReport>,
    /// Sites whose live bytes grow steadily (not analysed yet: empty).
    pub growth: Vec<serde_json::Value>,
    /// How the allocator's footprint compares with what the program asked for.
    pub fragmentation: Fragmentation,
    /// Suggested changes (not analysed yet: empty).
    pub recommendations: Vec<serde_json::Value>,
    /// Memory over time, from the shim's periodic statistics.
    pub timeline: Vec<Sample>,
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
    /// Requested sizes, log2 buckets.
    pub size_histogram: Vec<Bucket>,
    /// Lifetimes of freed blocks in milliseconds, log2 buckets.
    pub lifetime_histogram: Vec<Bucket>,
}

/// What a site left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLeak {
    /// `"live_at_exit"` (finer classes come later).
    pub class: String,
    /// Bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
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

/// The allocator's footprint against the program's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragmentation {
    /// Latest resident set size.
    pub rss_bytes: Option<u64>,
    /// Bytes the allocator holds from the system (latest statistics).
    pub heap_bytes: Option<u64>,
    /// Requested bytes live.
    pub requested_bytes: u64,
    /// Usable bytes of the live blocks.
    pub usable_bytes: u64,
}

//! The events a profiled process sends to the collector.
//!
//! A stream is a sequence of [`Event`]s in the order the shim's sender thread
//! drained them. Within one thread the order is the order of the calls; across
//! threads it is the order of the queue, which respects the shim's ordering
//! rule: a free is queued *before* the real free runs and an allocation *after*
//! the real allocation returns, so an address is never seen allocated twice.
//!
//! Timestamps (`ts`) are nanoseconds since [`Hello::start_mono_ns`] on the
//! process's `CLOCK_MONOTONIC`.

use serde::{Deserialize, Serialize};

/// Identifier of an interned call stack: a 64-bit hash of its frames.
///
/// The shim sends each stack once as a [`StackDef`] and then refers to it by
/// this id. A reference may arrive before its definition (threads race), so
/// the collector resolves ids lazily.
pub type StackId = u64;

/// One message of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// First event of every stream: who is speaking.
    Hello(Hello),
    /// A loaded object (executable or shared library), at start and after `dlopen`.
    Module(Module),
    /// A module that was unloaded (`dlclose`), identified by its load bias.
    ModuleUnloaded {
        /// Nanoseconds since start.
        ts: u64,
        /// The load bias the module was announced with.
        base: u64,
    },
    /// The frames of an interned stack.
    Stack(StackDef),
    /// A CPython code object that Python frames of stacks refer to.
    PythonCode(crate::python::PythonCode),
    /// A heap block was returned to the program.
    Alloc(Alloc),
    /// A heap block is about to be released.
    Free(Free),
    /// The `realloc` whose [`Free`] (with `realloc: true`) this thread sent last
    /// failed: the old block is still allocated, exactly as before.
    ReallocFailed {
        /// Nanoseconds since start.
        ts: u64,
        /// Kernel thread id of the caller.
        tid: u32,
        /// Address of the block that stays allocated.
        addr: u64,
    },
    /// A region was mapped with `mmap`/`mmap64`/`mremap` by the program.
    Mmap(Mmap),
    /// A range is about to be unmapped (`munmap`, or the old range of `mremap`).
    Munmap(Munmap),
    /// This process forked; `child_pid` starts with a copy of the state as of this event.
    Forked {
        /// Nanoseconds since start.
        ts: u64,
        /// Pid of the new child process.
        child_pid: u32,
    },
    /// Periodic process-wide statistics, sampled by the sender thread.
    Stats(Stats),
    /// Events dropped so far by this process (a running total, not a delta).
    Lost {
        /// Total number of events the shim could not deliver.
        count: u64,
    },
    /// The process is exiting normally and asks for its live set, to classify
    /// leaks: the collector answers on the same connection with a
    /// [`LiveSet`] frame listing the blocks it holds as live, by address.
    ScanRequest {
        /// Nanoseconds since start.
        ts: u64,
    },
    /// Result of the reachability scan of the blocks in the [`LiveSet`] reply.
    LeakScan(LeakScan),
    /// The last event of a stream that ended in an orderly way.
    End(End),
}

/// Identity of the process that opens a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// `Some(parent pid)` when this stream belongs to a child created by `fork`
    /// (without `exec`): it inherits the parent's state at the parent's
    /// [`Event::Forked`]. `None` for a freshly executed image.
    pub forked_from: Option<u32>,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: String,
    /// Command line.
    pub argv: Vec<String>,
    /// Wall-clock start time, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// `CLOCK_MONOTONIC` at start: the origin of every `ts` in the stream.
    pub start_mono_ns: u64,
    /// Mean bytes between samples; 0 means every call is recorded.
    pub sample_bytes: u64,
    /// Maximum number of frames captured per stack.
    pub stack_depth: u32,
    /// Version of the shim that produced the stream.
    pub shim_version: String,
}

/// A loaded ELF object and where it lives in the address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Nanoseconds since start when the module was seen.
    pub ts: u64,
    /// Absolute path of the file on disk (empty for the vDSO).
    pub path: String,
    /// Load bias: runtime address minus the ELF virtual address.
    pub base: u64,
    /// The `PT_LOAD` segments, in ELF virtual addresses.
    pub segments: Vec<Segment>,
    /// GNU build-id (`NT_GNU_BUILD_ID`), empty if the object has none.
    pub build_id: Vec<u8>,
}

/// One `PT_LOAD` segment of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// ELF virtual address of the segment (add [`Module::base`] for the runtime address).
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// Offset of the segment in the file.
    pub file_offset: u64,
    /// Whether the segment is executable.
    pub executable: bool,
}

/// The frames of one interned stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackDef {
    /// The id that [`Alloc::stack`] and [`Mmap::stack`] refer to.
    pub id: StackId,
    /// Return addresses, innermost first. The first frame is the return address
    /// into the caller of the allocation function (the shim's own frames are
    /// never included). Symbolize each at `address - 1` to land inside the call.
    /// Entries with bit 63 set are Python frames ([`crate::PythonFrame`]).
    pub frames: Vec<u64>,
}

/// Which allocation function produced a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllocKind {
    /// `malloc`
    Malloc,
    /// `calloc`
    Calloc,
    /// `realloc` or `reallocarray` (the old block, if any, was sent as a [`Free`]).
    Realloc,
    /// `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`
    Aligned,
}

/// A heap block handed to the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alloc {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Kernel thread id of the caller.
    pub tid: u32,
    /// Address returned to the program.
    pub addr: u64,
    /// Requested size in bytes (`nmemb * size` for `calloc`).
    pub size: u64,
    /// `malloc_usable_size` of the block: what the allocator really reserved.
    pub usable_size: u64,
    /// Call stack of the allocation.
    pub stack: StackId,
    /// Which function allocated it.
    pub kind: AllocKind,
}

/// A heap block about to be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Free {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Kernel thread id of the caller.
    pub tid: u32,
    /// Address of the block.
    pub addr: u64,
    /// The block is released by `realloc`; a [`Event::ReallocFailed`] from the
    /// same thread may follow if the `realloc` fails.
    pub realloc: bool,
}

/// A memory mapping created by the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mmap {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Kernel thread id of the caller.
    pub tid: u32,
    /// Start of the mapping.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// `PROT_*` flags.
    pub prot: i32,
    /// `MAP_*` flags.
    pub flags: i32,
    /// File descriptor, -1 for anonymous mappings.
    pub fd: i32,
    /// The new range of an `mremap` (which moved or resized the range the
    /// same thread's [`Munmap`] with `remap` released just before, and keeps
    /// its kind: anonymous or file-backed); `prot`, `flags` and `fd` are
    /// then unknown.
    pub remap: bool,
}

/// A mapped range about to be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Munmap {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Kernel thread id of the caller.
    pub tid: u32,
    /// Start of the range.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// The old range of an `mremap`, whose new range (an [`Mmap`] with
    /// `remap`) comes next from the same thread and keeps its kind.
    pub remap: bool,
}

/// Process-wide memory statistics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Bytes the allocator holds from the system (`mallinfo2`: arena + mmapped).
    pub heap_bytes: u64,
    /// Bytes the allocator considers in use (`mallinfo2`: uordblks + hblkhd).
    pub heap_in_use_bytes: u64,
    /// Nanoseconds the program's threads have spent waiting for a full queue.
    pub queue_wait_ns: u64,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// The process called `exit` or returned from `main` with this code.
    Exit(i32),
    /// The process exited normally, by a path that did not reveal its code
    /// (an `exit` made from inside the C library, e.g. by `error(3)`).
    ExitCodeUnknown,
    /// The process is about to replace its image with `exec`.
    Exec,
}

/// Last event of an orderly stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Nanoseconds since start.
    pub ts: u64,
    /// Why the stream ends.
    pub reason: EndReason,
    /// Total events dropped over the life of the process.
    pub lost_events: u64,
}

/// One live block, as the collector sends it back for the exit scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveBlock {
    /// Address of the block.
    pub addr: u64,
    /// Requested size in bytes.
    pub size: u64,
    /// What the allocator reserved (`malloc_usable_size`), which tells where
    /// the allocator's own header of the next chunk lies.
    pub usable: u64,
}

/// The collector's reply to [`Event::ScanRequest`]: every block it holds as
/// live, sorted by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSet {
    /// Live blocks in ascending address order.
    pub blocks: Vec<LiveBlock>,
}

/// How a block still allocated at exit is reached, in memcheck's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeakClass {
    /// A chain of pointers to block starts leads to it from a root.
    Reachable,
    /// Only chains with an interior pointer lead to it from a root.
    Possibly,
    /// No chain from a root, but a lost block points to it.
    Indirectly,
    /// Nothing points to it.
    Definitely,
}

/// What the exit scan found, block by block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakScan {
    /// Nanoseconds since start when the scan finished.
    pub ts: u64,
    /// How long the scan took in the process, in nanoseconds.
    pub duration_ns: u64,
    /// One class per block of the [`LiveSet`], in its order.
    pub classes: Vec<LeakClass>,
    /// Bytes of root memory scanned (module data, stacks, thread-local storage).
    pub root_bytes: u64,
    /// Bytes of heap blocks scanned.
    pub heap_bytes: u64,
}

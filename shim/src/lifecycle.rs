//! Start, fork, exec and exit: the life of a process's stream.
//!
//! * Initialisation runs once, from the constructor or from the first hooked
//!   call if that comes earlier (another library's constructor may allocate).
//! * The stream (connection + sender thread) starts in the constructor; in a
//!   forked child it starts lazily, on the child's first recorded call, so a
//!   child that only `exec`s costs nothing.
//! * At `exit` (after the program's own `atexit` handlers and destructors) and
//!   before `exec`, the stream is flushed so that nothing is lost: by the
//!   exiting thread itself unless the sender is mid-round.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use memshim_proto::Hello;

use crate::config::Config;
use crate::queue::{self, RawKind};
use crate::sampled_set::SampledSet;
use crate::sampler;
use crate::sender;
use crate::stack::{self, SeenSet};
use crate::thread_state::{self, Guard};
use crate::writer::Sink;
use crate::{announce, clock, descriptors, leakscan, modules, real, recorder, trace_file};

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;

/// How long `exit` or `exec` waits for the collector to take the last events.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_CODE_UNKNOWN: i64 = i64::MIN;

static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);
static CONFIG: OnceLock<Config> = OnceLock::new();
static PENDING_CHILD_OF: AtomicU32 = AtomicU32::new(0);
static EXIT_CODE: AtomicI64 = AtomicI64::new(EXIT_CODE_UNKNOWN);
/// Pid whose stream the queues feed: a `vfork` child shares the parent's
/// memory, queues included, and must not end the parent's stream.
static STREAM_PID: AtomicU32 = AtomicU32::new(0);

/// Initialises the shim if nobody has yet. Cheap after the first call.
#[inline(always)]
pub fn ensure_init() {
    if INIT.load(Ordering::Acquire) == INIT_NONE {
        init();
    }
}

#[cold]
fn init() {
    if INIT
        .compare_exchange(INIT_NONE, INIT_RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // Resolve first: under the guard, allocations would go to the small bootstrap arena.
    let _ = real::get();
    let Some(_guard) = Guard::enter() else {
        INIT.store(INIT_NONE, Ordering::Release);
        return;
    };
    let config = CONFIG.get_or_init(Config::from_env);
    if !config.disabled {
        #[cfg(target_arch = "x86_64")]
        crate::unwind::set_memo(config.unwind_memo);
        if let Some((start, end)) = modules::range_containing(init as *const () as usize) {
            stack::set_own_range(start, end);
        }
        clock::choose_ticks(!config.samples_sparsely());
        clock::reset_origin();
        let queued = queue::create(config);
        sampler::configure(config.sample_bytes, config.sample_seed);
        let sampled = if config.sample_bytes != 0 {
            SampledSet::new()
        } else {
            None
        };
        if let (true, Some(seen)) = (queued, SeenSet::new()) {
            recorder::start(config.stack_depth, seen, sampled);
        }
    }
    if !recorder::is_recording() {
        // Disabled, or set-up failed: every call goes straight through.
        recorder::stop();
    }
    INIT.store(INIT_DONE, Ordering::Release);
}

/// The shim's constructor: initialise, then open this process's stream.
#[ctor::ctor]
unsafe fn constructor() {
    ensure_init();
    if !recorder::is_recording() {
        return;
    }
    // Registered now, before `main`, so it runs after every handler the
    // program registers later and after the ELF destructors (see DESIGN.md).
    libc::atexit(at_exit);
    let _guard = Guard::enter();
    start_stream(None);
    crate::python::detect();
}

/// Starts a forked child's stream on its first recorded call.
#[inline(always)]
pub fn ensure_stream() {
    if PENDING_CHILD_OF.load(Ordering::Relaxed) != 0 {
        start_child_stream();
    }
}

#[cold]
fn start_child_stream() {
    let parent = PENDING_CHILD_OF.swap(0, Ordering::AcqRel);
    if parent != 0 {
        start_stream(Some(parent));
    }
}

/// Connects to the collector (or opens the trace file) and starts the sender.
/// Runs under the guard. On failure recording stops, with one warning line.
fn start_stream(forked_from: Option<u32>) {
    let Some(config) = CONFIG.get() else { return };
    let hello = hello(forked_from, config);
    STREAM_PID.store(hello.pid, Ordering::Release);
    let sink = match UnixStream::connect(&config.socket) {
        Ok(s) => Some(Sink::Socket(adopted(s))),
        Err(connect_err) => match config.output_path(hello.pid) {
            Some(path) => match trace_file::open(&path, hello.pid) {
                Ok(f) => Some(Sink::File(adopted(f))),
                Err(e) => {
                    crate::warn(&format!(
                        "cannot write trace file {}: {e}; not recording",
                        path.display()
                    ));
                    None
                }
            },
            None => {
                crate::warn(&format!(
                    "no collector at {} ({connect_err}); not recording. Start `memcollect serve`, \
                     use `memcollect run -- CMD`, or set MEMSHIM_OUTPUT",
                    config.socket.display()
                ));
                None
            }
        },
    };
    if !sink.is_some_and(|sink| sender::start(sink, hello)) {
        recorder::stop();
    }
}

/// `sink` moved to the shim's own high descriptor number ([`descriptors`]).
fn adopted<T: IntoRawFd + FromRawFd>(sink: T) -> T {
    let fd = descriptors::adopt(sink.into_raw_fd(), descriptors::SINK);
    // SAFETY: `adopt` returns a descriptor that replaces the one `sink` owned.
    unsafe { T::from_raw_fd(fd) }
}

fn hello(forked_from: Option<u32>, config: &Config) -> Hello {
    let argv = std::fs::read("/proc/self/cmdline")
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Hello {
        // SAFETY: getpid/getppid have no preconditions.
        pid: unsafe { libc::getpid() } as u32,
        ppid: unsafe { libc::getppid() } as u32,
        forked_from,
        exe: std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        argv,
        start_unix_ns: clock::unix_ns(),
        start_mono_ns: clock::origin_ns(),
        sample_bytes: config.sample_bytes,
        stack_depth: config.stack_depth as u32,
        shim_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// In a forked child, right after `fork` returns: fresh queues, counters,
/// clock and stack table; the stream itself waits for the first event.
pub fn after_fork_child(parent: u32) {
    thread_state::forget_tid();
    descriptors::release_after_fork();
    if !recorder::is_recording() {
        return;
    }
    let (Some(_guard), Some(config)) = (Guard::enter(), CONFIG.get()) else {
        return;
    };
    clock::reset_origin();
    queue::reset_counters();
    recorder::forget_stacks();
    sender::reset_after_fork();
    announce::reset_after_fork();
    EXIT_CODE.store(EXIT_CODE_UNKNOWN, Ordering::Relaxed);
    if !queue::create(config) {
        // The parent's queues are not this process's: it goes unrecorded.
        recorder::stop();
        return;
    }
    PENDING_CHILD_OF.store(parent, Ordering::Release);
}

/// Remembers the code the process is exiting with (from `exit` or `main`'s return).
pub fn set_exit_code(code: i32) {
    EXIT_CODE.store(i64::from(code), Ordering::Relaxed);
}

/// Whether this process has a stream to end (a forked child that never
/// recorded anything has none).
fn has_stream() -> bool {
    recorder::is_recording() && PENDING_CHILD_OF.load(Ordering::Acquire) == 0 && sender::is_live()
}

extern "C" fn at_exit() {
    let entry_sp = stack_pointer();
    if !has_stream() {
        return;
    }
    let code = EXIT_CODE.load(Ordering::Relaxed);
    let code = (code != EXIT_CODE_UNKNOWN).then_some(code as i32);
    announce_last_modules();
    leakscan::run(entry_sp, FLUSH_TIMEOUT);
    if recorder::end(RawKind::EndExit, code) {
        sender::flush(FLUSH_TIMEOUT);
    }
}

/// Before `_exit`: no handlers run and, `_exit` being async-signal-safe,
/// the call may come from a signal handler that interrupted the allocator.
/// So this thread allocates nothing: it queues the `End` and waits, at most
/// [`FLUSH_TIMEOUT`], for the sender to write it. The exit leak scan
/// (which allocates) is skipped: the live set is reported unclassified. A
/// `vfork` child (another pid on the parent's memory) has no stream.
pub fn before_quick_exit(code: i32) {
    // SAFETY: getpid has no preconditions.
    let own_stream = STREAM_PID.load(Ordering::Acquire) == unsafe { libc::getpid() } as u32;
    if !(own_stream && has_stream()) {
        return;
    }
    if recorder::end(RawKind::EndExit, Some(code)) {
        sender::flush_by_sender(FLUSH_TIMEOUT);
    }
}

/// A last look at the loaded modules, so that every frame can be named.
fn announce_last_modules() {
    if let Some(_guard) = Guard::enter() {
        announce::now();
    }
}

/// The current stack pointer (an approximation one frame off is fine: it
/// only bounds where the exit scan starts reading the stack).
#[inline(always)]
fn stack_pointer() -> u64 {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as u64
}

/// Before `exec`: send everything and say so. If `exec` fails the stream
/// simply goes on. A `vfork` child (another pid on the parent's memory) is
/// about to become a new image without ever having had a stream: nothing to do.
pub fn before_exec() {
    // SAFETY: getpid has no preconditions.
    let own_stream = STREAM_PID.load(Ordering::Acquire) == unsafe { libc::getpid() } as u32;
    if !(own_stream && has_stream()) {
        return;
    }
    announce_last_modules();
    if recorder::end(RawKind::EndExec, None) {
        sender::flush(FLUSH_TIMEOUT);
    }
}

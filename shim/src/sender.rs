//! The sender thread: drains the queues, encodes batches, writes the stream.
//!
//! One per process. It owns the connection to the collector (or the trace
//! file), announces modules as they are loaded, samples memory statistics, and
//! acknowledges flush requests so that `exit` and `exec` lose nothing.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use memshim_proto::framing::{encode_frame, stream_header};
use memshim_proto::{
    Alloc, AllocKind, End, EndReason, Event, Free, Hello, Mmap, Munmap, StackDef, Stats,
};

use crate::clock;
use crate::modules::ModuleTracker;
use crate::queue::{self, Channel, RawEvent, RawKind};
use crate::thread_state;

const NONE: u8 = 0;
const LIVE: u8 = 1;
const DEAD: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NONE);
static FLUSH_REQUESTED: AtomicU64 = AtomicU64::new(0);
static FLUSHED: AtomicU64 = AtomicU64::new(0);

const BATCH_EVENTS: usize = 16 * 1024;
const IDLE_SLEEP: Duration = Duration::from_millis(1);
const MODULE_CHECK_NS: u64 = 10_000_000;
const STATS_NS: u64 = 100_000_000;

/// Where the stream goes.
pub enum Sink {
    /// A connected collector.
    Socket(UnixStream),
    /// A trace file (`MEMSHIM_OUTPUT`).
    File(File),
}

impl Sink {
    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        match self {
            // `send` with MSG_NOSIGNAL: a vanished collector must never raise
            // SIGPIPE in the host (std's `write` would).
            Sink::Socket(s) => {
                while !bytes.is_empty() {
                    // SAFETY: a valid socket and a readable buffer.
                    let n = unsafe {
                        libc::send(
                            s.as_raw_fd(),
                            bytes.as_ptr().cast(),
                            bytes.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        let err = std::io::Error::last_os_error();
                        if err.kind() == std::io::ErrorKind::Interrupted {
                            continue;
                        }
                        return Err(err);
                    }
                    bytes = &bytes[n as usize..];
                }
                Ok(())
            }
            Sink::File(f) => f.write_all(bytes),
        }
    }
}

/// Whether a sender is draining the queues (producers may wait for room).
#[inline(always)]
pub fn is_live() -> bool {
    STATE.load(Ordering::Relaxed) == LIVE
}

/// Forgets the parent's sender in a forked child (the thread does not exist there).
pub fn reset_after_fork() {
    STATE.store(NONE, Ordering::Relaxed);
    FLUSH_REQUESTED.store(0, Ordering::Relaxed);
    FLUSHED.store(0, Ordering::Relaxed);
}

/// Writes the stream header, `hello` and the module map, then starts the
/// sender thread. Runs under the guard. Returns `false` if the sink failed.
pub fn start(mut sink: Sink, hello: Hello) -> bool {
    let mut modules = ModuleTracker::default();
    let mut batch = vec![Event::Hello(hello)];
    if let Some(changes) = modules.changes() {
        batch.extend(changes.loaded.into_iter().map(Event::Module));
    }
    let mut buf = stream_header().to_vec();
    encode_frame(&batch, &mut buf);
    if sink.write_all(&buf).is_err() {
        return false;
    }
    STATE.store(LIVE, Ordering::Release);
    let spawned = with_signals_blocked(|| spawn(Box::new(SenderArgs { sink, modules })));
    if !spawned {
        STATE.store(DEAD, Ordering::Release);
    }
    spawned
}

/// What the sender thread starts with.
struct SenderArgs {
    sink: Sink,
    modules: ModuleTracker,
}

/// Starts the sender with `pthread_create` rather than `std::thread`: the
/// thread must take its guard before anything runs on it, and std's thread
/// start-up allocates before the closure is called.
fn spawn(args: Box<SenderArgs>) -> bool {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        thread_state::guard_forever();
        // SAFETY: `arg` is the box leaked by `spawn`, handed over exactly once.
        let args = unsafe { Box::from_raw(arg.cast::<SenderArgs>()) };
        run(args.sink, args.modules);
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(args);
    // SAFETY: plain pthread calls with valid pointers; on failure the box is reclaimed.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 * 1024);
        let mut thread: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut thread, &attr, start, arg.cast());
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg));
            return false;
        }
        libc::pthread_setname_np(thread, c"memshim-sender".as_ptr());
    }
    true
}

/// Runs `f` with every signal blocked, so that a thread it creates starts
/// (and stays) with all signals blocked: the host's signals are for its own threads.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain signal-mask manipulation with valid pointers.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let out = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        out
    }
}

fn run(mut sink: Sink, mut modules: ModuleTracker) {
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH_EVENTS);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut last_module_check = 0;
    let mut last_stats = 0;
    let mut lost_sent = 0;
    loop {
        let flush_request = FLUSH_REQUESTED.load(Ordering::Acquire);
        let Some(ch) = queue::channel() else { return };
        let now = clock::since_start_ns();
        if now - last_module_check >= MODULE_CHECK_NS
            || flush_request != FLUSHED.load(Ordering::Relaxed)
        {
            last_module_check = now;
            announce_modules(&mut modules, &mut batch);
        }
        drain(ch, &mut batch);
        if now - last_stats >= STATS_NS {
            last_stats = now;
            batch.push(Event::Stats(stats(now)));
        }
        let lost = queue::lost();
        if lost != lost_sent {
            lost_sent = lost;
            batch.push(Event::Lost { count: lost });
        }
        let idle = batch.is_empty();
        if !idle {
            buf.clear();
            encode_frame(&batch, &mut buf);
            batch.clear();
            if sink.write_all(&buf).is_err() {
                // The collector is gone: stop recording, let producers go.
                STATE.store(DEAD, Ordering::Release);
                crate::recorder::stop();
                return;
            }
        }
        if ch.events.is_empty() && ch.stacks.is_empty() {
            FLUSHED.store(flush_request, Ordering::Release);
            if idle {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
    }
}

fn announce_modules(modules: &mut ModuleTracker, batch: &mut Vec<Event>) {
    if let Some(changes) = modules.changes() {
        let ts = clock::since_start_ns();
        batch.extend(
            changes
                .unloaded
                .into_iter()
                .map(|base| Event::ModuleUnloaded { ts, base }),
        );
        batch.extend(changes.loaded.into_iter().map(Event::Module));
    }
}

fn drain(ch: &Channel, batch: &mut Vec<Event>) {
    while let Some(rec) = ch.stacks.pop() {
        batch.push(Event::Stack(StackDef {
            id: rec.id,
            frames: rec.frames[..rec.len as usize].to_vec(),
        }));
    }
    while batch.len() < BATCH_EVENTS {
        match ch.events.pop() {
            Some(raw) => batch.push(convert(raw)),
            None => break,
        }
    }
}

fn convert(r: RawEvent) -> Event {
    let alloc = |kind| {
        Event::Alloc(Alloc {
            ts: r.ts,
            tid: r.tid,
            addr: r.addr,
            size: r.size,
            usable_size: r.aux,
            stack: r.stack,
            kind,
        })
    };
    let free = |realloc| {
        Event::Free(Free {
            ts: r.ts,
            tid: r.tid,
            addr: r.addr,
            realloc,
        })
    };
    match r.kind {
        RawKind::Malloc => alloc(AllocKind::Malloc),
        RawKind::Calloc => alloc(AllocKind::Calloc),
        RawKind::Realloc => alloc(AllocKind::Realloc),
        RawKind::Aligned => alloc(AllocKind::Aligned),
        RawKind::Free => free(false),
        RawKind::ReallocFree => free(true),
        RawKind::ReallocFailed => Event::ReallocFailed {
            ts: r.ts,
            tid: r.tid,
            addr: r.addr,
        },
        RawKind::Mmap => Event::Mmap(Mmap {
            ts: r.ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
            prot: (r.aux >> 32) as i32,
            flags: r.aux as u32 as i32,
            fd: r.aux2 as i64 as i32,
            stack: r.stack,
        }),
        RawKind::Munmap => Event::Munmap(Munmap {
            ts: r.ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
        }),
        RawKind::Forked => Event::Forked {
            ts: r.ts,
            child_pid: r.addr as u32,
        },
        RawKind::EndExit => Event::End(End {
            ts: r.ts,
            reason: if r.aux != 0 {
                EndReason::Exit(r.addr as i32)
            } else {
                EndReason::ExitCodeUnknown
            },
            lost_events: queue::lost(),
        }),
        RawKind::EndExec => Event::End(End {
            ts: r.ts,
            reason: EndReason::Exec,
            lost_events: queue::lost(),
        }),
    }
}

fn stats(ts: u64) -> Stats {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let mi = unsafe { libc::mallinfo2() };
    Stats {
        ts,
        rss_bytes: rss_bytes(),
        heap_bytes: (mi.arena + mi.hblkhd) as u64,
        heap_in_use_bytes: (mi.uordblks + mi.hblkhd) as u64,
        queue_wait_ns: queue::wait_ns(),
    }
}

fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Waits until everything queued before this call has been written, the
/// sender is gone, or `timeout` passes.
pub fn flush(timeout: Duration) {
    if !is_live() {
        return;
    }
    let request = FLUSH_REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    let deadline = clock::monotonic_ns() + timeout.as_nanos() as u64;
    while FLUSHED.load(Ordering::Acquire) < request && is_live() && clock::monotonic_ns() < deadline
    {
        std::thread::sleep(Duration::from_micros(100));
    }
}

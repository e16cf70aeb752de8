//! The sender thread: drains the queues, encodes batches, writes the stream.
//!
//! One per process. It owns the connection to the collector (or the trace
//! file), forwards module announcements, samples memory statistics,
//! and acknowledges flush requests so that `exit` and `exec` lose nothing.
//! It never takes a lock the program's threads could hold (see `announce`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use memshim_proto::framing::stream_header;
use memshim_proto::{
    Alloc, AllocKind, Encoder, End, EndReason, Event, Free, Hello, Mmap, Munmap, StackDef, Stats,
};

use crate::clock::{self, TickConverter};
use crate::modules::ModuleTracker;
use crate::queue::{self, Channel, RawEvent, RawKind};
use crate::wake::Doorbell;
use crate::{announce, threads};

const NONE: u8 = 0;
const LIVE: u8 = 1;
const DEAD: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NONE);
static FLUSH_REQUESTED: AtomicU64 = AtomicU64::new(0);
static FLUSHED: AtomicU64 = AtomicU64::new(0);
/// Rung by `flush` so that the sender does not sleep out its idle period.
static DOORBELL: Doorbell = Doorbell::new();
/// Rung when a flush is done, for the thread waiting in [`flush`].
static FLUSH_DONE: Doorbell = Doorbell::new();
/// A duplicate of the collector socket, for reading its replies (-1: none).
static REPLY_FD: AtomicI32 = AtomicI32::new(-1);

const BATCH_EVENTS: usize = 16 * 1024;
/// How long an idle sender sleeps: the latency of a lone event. A flush
/// request or a producer finding a queue full wakes it at once.
const IDLE_SLEEP: Duration = Duration::from_millis(10);
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
    REPLY_FD.store(-1, Ordering::Relaxed);
    FLUSH_REQUESTED.store(0, Ordering::Relaxed);
    FLUSHED.store(0, Ordering::Relaxed);
}

/// Writes the stream header, `hello` and the module map, then starts the
/// sender thread and hands the module map to [`announce`]. Runs under the guard. Returns
/// `false` if the sink failed.
pub fn start(mut sink: Sink, hello: Hello) -> bool {
    let mut modules = ModuleTracker::default();
    let mut batch = vec![Event::Hello(hello)];
    if let Some(changes) = modules.changes() {
        batch.extend(changes.loaded.into_iter().map(Event::Module));
    }
    let mut encoder = Encoder::default();
    let mut buf = stream_header().to_vec();
    encoder.encode_frame(&batch, &mut buf);
    if sink.write_all(&buf).is_err() {
        return false;
    }
    if let Sink::Socket(s) = &sink {
        // SAFETY: duplicating a valid descriptor, close-on-exec.
        let fd = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        REPLY_FD.store(fd, Ordering::Release);
    }
    announce::begin(modules);
    STATE.store(LIVE, Ordering::Release);
    if !threads::spawn_guarded(c"memshim-sender", Box::new(move || run(sink, encoder))) {
        STATE.store(DEAD, Ordering::Release);
        return false;
    }
    true
}

fn run(mut sink: Sink, mut encoder: Encoder) {
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH_EVENTS);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut last_stats = 0;
    let mut lost_sent = 0;
    let mut clock = TickConverter::new();
    loop {
        let seen = DOORBELL.seq();
        let flush_request = FLUSH_REQUESTED.load(Ordering::Acquire);
        let Some(ch) = queue::channel() else { return };
        clock.calibrate();
        let now = clock::since_start_ns();
        drain(ch, &clock, &mut batch);
        queue::drained();
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
            encoder.encode_frame(&batch, &mut buf);
            batch.clear();
            if sink.write_all(&buf).is_err() {
                // The collector is gone: stop recording, let producers go.
                STATE.store(DEAD, Ordering::Release);
                crate::recorder::stop();
                return;
            }
        }
        if ch.events.is_empty() && ch.stacks.is_empty() {
            if FLUSHED.swap(flush_request, Ordering::AcqRel) != flush_request {
                FLUSH_DONE.ring();
            }
            if idle {
                DOORBELL.sleep_since(seen, IDLE_SLEEP);
            }
        }
    }
}

fn drain(ch: &Channel, clock: &TickConverter, batch: &mut Vec<Event>) {
    // Rare events first: frames of later events may point into new modules,
    // and a leak scan must precede the `End` queued after it.
    while let Some(event) = ch.rare.pop() {
        batch.push(event);
    }
    while let Some(rec) = ch.stacks.pop() {
        batch.push(Event::Stack(StackDef {
            id: rec.id,
            frames: rec.frames[..rec.len as usize].to_vec(),
        }));
    }
    while batch.len() < BATCH_EVENTS {
        match ch.events.pop() {
            Some(raw) => batch.push(convert(raw, clock.since_start_ns(raw.ts))),
            None => break,
        }
    }
}

/// The protocol event for `r`, which happened `ts` ns after the origin.
fn convert(r: RawEvent, ts: u64) -> Event {
    let alloc = |kind| {
        Event::Alloc(Alloc {
            ts,
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
            ts,
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
            ts,
            tid: r.tid,
            addr: r.addr,
        },
        RawKind::Mmap => Event::Mmap(Mmap {
            ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
            prot: (r.aux >> 32) as i32,
            flags: r.aux as u32 as i32,
            fd: r.aux2 as i64 as i32,
            stack: r.stack,
        }),
        RawKind::Munmap => Event::Munmap(Munmap {
            ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
        }),
        RawKind::Forked => Event::Forked {
            ts,
            child_pid: r.addr as u32,
        },
        RawKind::EndExit => Event::End(End {
            ts,
            reason: if r.aux != 0 {
                EndReason::Exit(r.addr as i32)
            } else {
                EndReason::ExitCodeUnknown
            },
            lost_events: queue::lost(),
        }),
        RawKind::ScanRequest => Event::ScanRequest { ts },
        RawKind::EndExec => Event::End(End {
            ts,
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

/// Cuts the sender's idle sleep short (a producer found a queue full).
pub fn wake() {
    DOORBELL.ring();
}

/// A descriptor on which the collector's replies can be read, if the stream
/// goes to a collector (a trace file has no one to answer).
pub fn reply_fd() -> Option<i32> {
    let fd = REPLY_FD.load(Ordering::Acquire);
    (fd >= 0 && is_live()).then_some(fd)
}

/// Waits until everything queued before this call has been written, the
/// sender is gone, or `timeout` passes.
pub fn flush(timeout: Duration) {
    if !is_live() {
        return;
    }
    let request = FLUSH_REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    DOORBELL.ring();
    FLUSH_DONE.wait_for(
        || FLUSHED.load(Ordering::Acquire) >= request || !is_live(),
        timeout,
    );
}

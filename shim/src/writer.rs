//! The stream writer: drains the queues, encodes a frame, writes it out.
//!
//! There is one per stream, and whichever thread holds it writes. That is
//! normally the sender thread, round after round. But `exit` and `exec` take
//! it and write the last frames themselves: handing them to the sender and
//! waiting for its answer costs two wake-ups, most of what a short process
//! pays to exit under the shim. The writer changes hands through one atomic
//! pointer ([`take`], and [`Held`]'s drop puts it back): a thread that finds
//! it taken does something else instead of waiting, and there is no lock that
//! a `fork` could orphan.

use std::fs::File;
use std::io::{self, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use memshim_proto::framing::FrameEncoder;
use memshim_proto::{
    Alloc, AllocKind, Encoder, End, EndReason, Event, Free, Mmap, Munmap, StackDef, Stats,
};

use crate::clock::{self, TickConverter};
use crate::descriptors;
use crate::queue::{self, Channel, RawEvent, RawKind};

/// Most events in one frame.
pub const BATCH_EVENTS: usize = 16 * 1024;
const STATS_NS: u64 = 100_000_000;
/// How long one blocking `send` may take before the writer checks its
/// deadline (a stopped collector must not hold `exit` for ever).
const SEND_SLICE: Duration = Duration::from_millis(50);

static SLOT: AtomicPtr<Writer> = AtomicPtr::new(std::ptr::null_mut());

/// Where the stream goes.
pub enum Sink {
    /// A connected collector.
    Socket(UnixStream),
    /// A trace file (`MEMSHIM_OUTPUT`).
    File(File),
    /// None: the program took the descriptor's number and no other was
    /// free (see [`Writer::relocate_sink`]).
    Gone,
}

impl Sink {
    /// Makes blocking sends return now and then, so that a writer with a
    /// deadline can give up (see [`Sink::write_all`]).
    pub fn bound_sends(&self) {
        if let Sink::Socket(s) = self {
            let _ = s.set_write_timeout(Some(SEND_SLICE));
        }
    }

    /// Writes all of `bytes`. A full socket is waited for until `deadline`
    /// ([`clock::monotonic_ns`]), for ever if `None`.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Option<u64>) -> io::Result<()> {
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
                        let err = io::Error::last_os_error();
                        match err.kind() {
                            io::ErrorKind::Interrupted => continue,
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                if deadline.is_none_or(|d| clock::monotonic_ns() < d) =>
                            {
                                continue
                            }
                            _ => return Err(err),
                        }
                    }
                    bytes = &bytes[n as usize..];
                }
                Ok(())
            }
            Sink::File(f) => f.write_all(bytes),
            Sink::Gone => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// The sink's descriptor, if it has one.
    fn raw_fd(&self) -> Option<i32> {
        match self {
            Sink::Socket(s) => Some(s.as_raw_fd()),
            Sink::File(f) => Some(f.as_raw_fd()),
            Sink::Gone => None,
        }
    }
}

/// The state of one stream's writing: the sink, the encoder's running
/// deltas and the buffers reused from frame to frame.
pub struct Writer {
    sink: Sink,
    encoder: Encoder,
    buf: Vec<u8>,
    clock: TickConverter,
    last_stats: u64,
    lost_sent: u64,
    wait_sent: u64,
    /// An `End` of exit was written: the stream is over.
    exited: bool,
}

impl Writer {
    /// A writer continuing the stream that `encoder` has begun on `sink`.
    /// The buffers start small: most processes are short and write little.
    pub fn new(sink: Sink, encoder: Encoder) -> Writer {
        Writer {
            sink,
            encoder,
            buf: Vec::with_capacity(16 * 1024),
            clock: TickConverter::new(),
            last_stats: 0,
            lost_sent: 0,
            wait_sent: 0,
            exited: false,
        }
    }

    /// Drains the rare events, the stack definitions and up to `max_events`
    /// events into one frame and writes it, with statistics when they are
    /// due (or before the `End`, if the program waited for the queue) and
    /// the lost count when it changed. Returns how many events it drained.
    ///
    /// The stream's `End` is its last event: the stack definitions and
    /// statistics queued with it go just before it, and once the process
    /// has said it is exiting nothing more is written (a `Stats` after
    /// `End` would read as a process that went on).
    pub fn round(
        &mut self,
        ch: &Channel,
        max_events: usize,
        deadline: Option<u64>,
    ) -> io::Result<usize> {
        let Writer {
            sink,
            encoder,
            buf,
            clock,
            last_stats,
            lost_sent,
            wait_sent,
            exited,
        } = self;
        if *exited {
            discard(ch);
            return Ok(0);
        }
        clock.calibrate();
        let now = clock::since_start_ns();
        buf.clear();
        let expected = ch.events.len().min(max_events);
        let mut frame = encoder.begin_frame(buf, expected);
        let (drained, end) = drain(ch, clock, &mut frame, max_events);
        queue::drained();
        // Statistics are due every STATS_NS, and before the `End` when the
        // program has waited for the queue since they were last sent: the
        // report must say so, even of a process that ends in the next
        // instant. Not more often: `mallinfo2` takes every arena's lock and
        // walks its free lists, which stalls the program's own `malloc`
        // calls (a program that waits would be made to wait more).
        let waited = queue::wait_ns();
        if now - *last_stats >= STATS_NS || (end.is_some() && waited != *wait_sent) {
            *last_stats = now;
            *wait_sent = waited;
            frame.event(&Event::Stats(stats(now)));
        }
        let lost = queue::lost();
        if lost != *lost_sent {
            *lost_sent = lost;
            frame.event(&Event::Lost { count: lost });
        }
        if let Some(end) = end {
            *exited = end.kind == RawKind::EndExit;
            frame.event(&convert(end, clock.since_start_ns(end.ts)));
        }
        if !frame.is_empty() {
            frame.finish();
            sink.write_all(buf, deadline)?;
        }
        Ok(drained)
    }

    /// Moves the sink to a new descriptor ([`descriptors::duplicate_high`]) and
    /// returns its number, or -1 if none was free: the sink is then gone and
    /// the next round fails, ending the stream. The old descriptor is left
    /// open, for the caller to close.
    pub fn relocate_sink(&mut self) -> i32 {
        let Some(fd) = self.sink.raw_fd() else {
            return -1;
        };
        let moved = descriptors::duplicate_high(fd);
        let new_sink = if moved < 0 {
            Sink::Gone
        } else if matches!(self.sink, Sink::Socket(_)) {
            // SAFETY: `moved` is a fresh descriptor that nothing else owns.
            Sink::Socket(unsafe { UnixStream::from_raw_fd(moved) })
        } else {
            // SAFETY: as above.
            Sink::File(unsafe { File::from_raw_fd(moved) })
        };
        // The old descriptor is the caller's to close: dropping it here
        // would go through the `close` hook, which refuses the shim's own.
        std::mem::forget(std::mem::replace(&mut self.sink, new_sink));
        moved
    }

    /// Writes everything queued before this call (events other threads
    /// push meanwhile may or may not go with it), by `deadline`.
    pub fn write_queued(&mut self, ch: &Channel, deadline: u64) -> io::Result<()> {
        let mut left = ch.events.len();
        loop {
            let drained = self.round(ch, left.clamp(1, BATCH_EVENTS), Some(deadline))?;
            left = left.saturating_sub(drained);
            if left == 0 || drained == 0 {
                return Ok(());
            }
        }
    }
}

/// Makes `writer` this process's writer. In a forked child the parent's is
/// abandoned, not freed: its buffers may be mid-use by a thread that no
/// longer exists.
pub fn install(writer: Writer) {
    SLOT.store(Box::into_raw(Box::new(writer)), Ordering::Release);
}

/// Takes the writer, if nobody else holds it.
pub fn take() -> Option<Held> {
    let ptr = SLOT.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: a pointer in the slot came from `install`'s box (or a `Held`
    // putting it back) and is owned by nobody while it sits there.
    (!ptr.is_null()).then_some(Held(ptr))
}

/// The writer, held by this thread until dropped.
pub struct Held(*mut Writer);

impl Deref for Held {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        // SAFETY: taken from the slot: this thread has it to itself.
        unsafe { &*self.0 }
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Writer {
        // SAFETY: as above.
        unsafe { &mut *self.0 }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only if the slot is still empty: a forked child may have
        // installed its own writer meanwhile.
        let _ = SLOT.compare_exchange(
            std::ptr::null_mut(),
            self.0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// Encodes queued events into `frame`: the rare ones, the stack
/// definitions, then up to `max_events` events, stopping at an `End`, which
/// it returns unencoded (the frame's statistics go before it). Returns how
/// many events it took, the `End` included.
fn drain(
    ch: &Channel,
    clock: &TickConverter,
    frame: &mut FrameEncoder<'_>,
    max_events: usize,
) -> (usize, Option<RawEvent>) {
    drain_definitions(ch, frame);
    let mut moved = 0;
    while moved < max_events {
        // SAFETY: only the writer's holder drains, one thread at a time.
        let Some(raw) = (unsafe { ch.events.pop() }) else {
            break;
        };
        moved += 1;
        if matches!(raw.kind, RawKind::EndExit | RawKind::EndExec) {
            // Definitions queued while this round took events (a stack is
            // queued before the event that uses it) go before the `End`.
            drain_definitions(ch, frame);
            return (moved, Some(raw));
        }
        encode(raw, clock.since_start_ns(raw.ts), frame);
    }
    (moved, None)
}

/// Encodes the queued rare events and stack definitions (by the writer's
/// holder: the queues' one consumer). Rare events come
/// before the events of the round: frames of later events may point into
/// new modules, and a leak scan must precede the `End` queued after it.
fn drain_definitions(ch: &Channel, frame: &mut FrameEncoder<'_>) {
    while let Some(event) = ch.rare.pop() {
        frame.event(&event);
    }
    // SAFETY: only the writer's holder drains, one thread at a time.
    while let Some(rec) = unsafe { ch.stacks.pop() } {
        frame.event(&Event::Stack(StackDef {
            id: rec.id,
            frames: rec.frames[..rec.len as usize].to_vec(),
        }));
    }
}

/// Empties the queues without writing: what other threads queue after the
/// `End` of an exit (a thread still running while the process exits)
/// cannot be told any more.
fn discard(ch: &Channel) {
    while ch.rare.pop().is_some() {}
    // SAFETY: only the writer's holder discards, one thread at a time.
    unsafe {
        while ch.stacks.pop().is_some() {}
        while ch.events.pop().is_some() {}
    }
}

/// Encodes `r`, which happened `ts` ns after the origin: allocations and
/// frees straight into their compact form, the rest through [`convert`].
#[inline(always)]
fn encode(r: RawEvent, ts: u64, frame: &mut FrameEncoder<'_>) {
    match r.kind {
        RawKind::Malloc => frame.alloc(&alloc(r, ts, AllocKind::Malloc)),
        RawKind::Calloc => frame.alloc(&alloc(r, ts, AllocKind::Calloc)),
        RawKind::Realloc => frame.alloc(&alloc(r, ts, AllocKind::Realloc)),
        RawKind::Aligned => frame.alloc(&alloc(r, ts, AllocKind::Aligned)),
        RawKind::Free => frame.free(&free(r, ts, false)),
        RawKind::ReallocFree => frame.free(&free(r, ts, true)),
        _ => frame.event(&convert(r, ts)),
    }
}

/// The allocation `r` records, of `kind`.
#[inline(always)]
fn alloc(r: RawEvent, ts: u64, kind: AllocKind) -> Alloc {
    Alloc {
        ts,
        tid: r.tid,
        addr: r.addr,
        size: r.size,
        usable_size: r.aux,
        stack: r.stack,
        kind,
    }
}

/// The release `r` records (by `realloc` if `realloc`).
#[inline(always)]
fn free(r: RawEvent, ts: u64, realloc: bool) -> Free {
    Free {
        ts,
        tid: r.tid,
        addr: r.addr,
        realloc,
    }
}

/// The protocol event for `r`, which happened `ts` ns after the origin.
#[cold]
fn convert(r: RawEvent, ts: u64) -> Event {
    match r.kind {
        RawKind::Malloc => Event::Alloc(alloc(r, ts, AllocKind::Malloc)),
        RawKind::Calloc => Event::Alloc(alloc(r, ts, AllocKind::Calloc)),
        RawKind::Realloc => Event::Alloc(alloc(r, ts, AllocKind::Realloc)),
        RawKind::Aligned => Event::Alloc(alloc(r, ts, AllocKind::Aligned)),
        RawKind::Free => Event::Free(free(r, ts, false)),
        RawKind::ReallocFree => Event::Free(free(r, ts, true)),
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
            remap: false,
        }),
        RawKind::Remapped => Event::Mmap(Mmap {
            ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
            prot: 0,
            flags: 0,
            fd: -1,
            remap: true,
        }),
        RawKind::Munmap => Event::Munmap(Munmap {
            ts,
            tid: r.tid,
            addr: r.addr,
            len: r.size,
            remap: r.aux != 0,
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

#[cfg(test)]
mod tests {
    use std::io::Seek;

    use crate::ring::Ring;
    use crossbeam_queue::SegQueue;
    use memshim_proto::framing::{stream_header, FrameReader};

    use super::*;
    use crate::queue::StackRecord;
    use crate::stack::MAX_FRAMES;

    fn malloc_event(addr: u64) -> RawEvent {
        let mut ev = RawEvent::simple(RawKind::Malloc, 1, addr);
        ev.size = 16;
        ev
    }

    /// Queues with room for `events` events and `stacks` stack definitions.
    fn channel(events: usize, stacks: usize) -> Channel {
        Channel {
            events: Ring::new(events).unwrap(),
            stacks: Ring::new(stacks).unwrap(),
            rare: SegQueue::new(),
        }
    }

    /// An unlinked stream file with its header written, and a second handle to read it back.
    fn stream_file(name: &str) -> (File, File) {
        let path = std::env::temp_dir().join(format!("memshim-{name}-{}", std::process::id()));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(&stream_header()).unwrap();
        let reader = file.try_clone().unwrap();
        (file, reader)
    }

    /// Every event written to the stream `reader` reads.
    fn read_events(mut reader: File) -> Vec<Event> {
        reader.rewind().unwrap();
        let mut frames = FrameReader::new(reader).unwrap();
        let mut events = Vec::new();
        while let Some(batch) = frames.next_batch().unwrap() {
            events.extend(batch);
        }
        events
    }

    /// The kinds of the events written so far, in order.
    fn kinds_written(reader: &File) -> Vec<&'static str> {
        read_events(reader.try_clone().unwrap())
            .iter()
            .map(|e| match e {
                Event::Alloc(_) => "alloc",
                Event::Stats(_) => "stats",
                Event::End(_) => "end",
                _ => "other",
            })
            .collect()
    }

    /// One test, since the slot is global: ownership and what gets written.
    #[test]
    fn one_holder_at_a_time_writes_what_was_queued() {
        let (file, reader) = stream_file("writer");
        install(Writer::new(Sink::File(file), Encoder::default()));

        let mut held = take().expect("the installed writer");
        assert!(take().is_none(), "a held writer is not handed out twice");

        let ch = channel(64, 4);
        for addr in 1..=40 {
            ch.events.push(malloc_event(addr * 16)).unwrap();
        }
        assert_eq!(held.round(&ch, 10, None).unwrap(), 10);
        assert_eq!(ch.events.len(), 30);
        held.write_queued(&ch, u64::MAX).unwrap();
        assert!(ch.events.is_empty());
        drop(held);
        assert!(take().is_some(), "a dropped hold puts the writer back");

        let addrs: Vec<u64> = read_events(reader)
            .into_iter()
            .filter_map(|e| match e {
                Event::Alloc(a) => Some(a.addr),
                _ => None,
            })
            .collect();
        assert_eq!(addrs, (1..=40).map(|a| a * 16).collect::<Vec<_>>());
    }

    /// The statistics due with the last frame go before the `End`, and
    /// nothing follows it (a reader would take the process for alive).
    #[test]
    fn the_end_of_an_exit_is_the_last_event_written() {
        let (file, reader) = stream_file("end");
        let mut writer = Writer::new(Sink::File(file), Encoder::default());
        let ch = channel(8, 1);
        ch.events.push(malloc_event(0x40)).unwrap();
        let mut end = RawEvent::simple(RawKind::EndExit, 1, 3);
        end.aux = 1;
        ch.events.push(end).unwrap();
        ch.events.push(malloc_event(0x80)).unwrap();
        // Statistics are due (as when the program waited for the queue).
        writer.wait_sent = u64::MAX;
        assert_eq!(writer.round(&ch, 8, None).unwrap(), 2);
        writer.wait_sent = u64::MAX;
        assert_eq!(writer.round(&ch, 8, None).unwrap(), 0);
        assert!(ch.events.is_empty(), "what came after the End is dropped");

        assert_eq!(kinds_written(&reader), ["alloc", "stats", "end"]);
    }

    /// A wait for the queue alone does not call for statistics (taking them
    /// stalls the program's allocator) until the `End`, which carries them.
    #[test]
    fn a_wait_brings_statistics_forward_only_to_the_end() {
        let (file, reader) = stream_file("wait");
        let mut writer = Writer::new(Sink::File(file), Encoder::default());
        let ch = channel(8, 1);
        // Not due by time (just sent), but the program waited.
        writer.last_stats = clock::since_start_ns();
        writer.wait_sent = u64::MAX;
        ch.events.push(malloc_event(0x40)).unwrap();
        assert_eq!(writer.round(&ch, 8, None).unwrap(), 1);
        assert_eq!(kinds_written(&reader), ["alloc"]);
        let mut end = RawEvent::simple(RawKind::EndExit, 1, 0);
        end.aux = 1;
        ch.events.push(end).unwrap();
        assert_eq!(writer.round(&ch, 8, None).unwrap(), 1);
        assert_eq!(kinds_written(&reader), ["alloc", "stats", "end"]);
    }

    /// A stack is queued just before the event that uses it, by another
    /// thread, possibly while a round takes events: when that round meets
    /// the `End`, the definition must still be written, and before it.
    #[test]
    fn definitions_queued_during_the_last_round_precede_the_end() {
        const STACKS: u64 = 2000;
        for _ in 0..200 {
            let (file, reader) = stream_file("race");
            let mut writer = Writer::new(Sink::File(file), Encoder::default());
            // Room for everything: rounds overlap the producer's pushes.
            let ch = channel(4096, 4096);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    for id in 1..=STACKS {
                        let mut rec = StackRecord {
                            id,
                            len: 1,
                            frames: [0; MAX_FRAMES],
                        };
                        rec.frames[0] = 0x1000 + id;
                        while let Err(back) = ch.stacks.push(rec) {
                            rec = back;
                        }
                        let mut ev = malloc_event(id * 16);
                        ev.stack = id;
                        while ch.events.push(ev).is_err() {}
                    }
                    let mut end = RawEvent::simple(RawKind::EndExit, 1, 0);
                    end.aux = 1;
                    while ch.events.push(end).is_err() {}
                });
                while !writer.exited {
                    writer.round(&ch, BATCH_EVENTS, None).unwrap();
                }
            });
            let events = read_events(reader);
            assert!(matches!(events.last(), Some(Event::End(_))));
            let defined: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Stack(s) => Some(s.id),
                    _ => None,
                })
                .collect();
            assert_eq!(
                defined,
                (1..=STACKS).collect::<Vec<u64>>(),
                "every stack, before the End"
            );
        }
    }
}

//! The sender thread: writes the stream round after round while the program runs.
//!
//! One per process. Each round it takes the [`writer`], drains the queues
//! into a frame and writes it; between rounds it sleeps, unless a producer
//! finds a queue filling up. `exit` and `exec` flush the stream themselves
//! when the writer is free ([`flush`]) and only fall back to asking the
//! sender when it is mid-round. The sender never takes a lock the program's
//! threads could hold (see `announce`).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use memshim_proto::framing::stream_header;
use memshim_proto::{Encoder, Event, Hello};

use crate::modules::ModuleTracker;
use crate::queue;
use crate::thread_state::Guard;
use crate::wake::Doorbell;
use crate::writer::{self, Sink, Writer, BATCH_EVENTS};
use crate::{announce, clock, descriptors, recorder, threads};

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

/// How long an idle sender sleeps: the latency of a lone event. A flush
/// request or a producer finding a queue filling up wakes it at once.
const IDLE_SLEEP: Duration = Duration::from_millis(10);

/// Whether the stream is being written (producers may wait for room).
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
    if sink.write_all(&buf, None).is_err() {
        // Closed here: dropping the sink would go through the `close`
        // hook, which refuses the shim's own descriptors.
        std::mem::forget(sink);
        descriptors::release(descriptors::SINK);
        return false;
    }
    if let Sink::Socket(s) = &sink {
        descriptors::adopt_copy(s.as_raw_fd(), descriptors::REPLY);
    }
    sink.bound_sends();
    announce::begin(modules);
    writer::install(Writer::new(sink, encoder));
    STATE.store(LIVE, Ordering::Release);
    if !threads::spawn_guarded(c"memshim-sender", Box::new(run)) {
        STATE.store(DEAD, Ordering::Release);
        return false;
    }
    true
}

fn run() {
    loop {
        let seen = DOORBELL.seq();
        let flush_request = FLUSH_REQUESTED.load(Ordering::Acquire);
        let Some(ch) = queue::channel() else { return };
        if !is_live() {
            return;
        }
        // Someone else (`exit`, `exec`) is writing: their round drains the queues.
        let Some(mut writer) = writer::take() else {
            DOORBELL.sleep_since(seen, IDLE_SLEEP);
            continue;
        };
        let drained = writer.round(ch, BATCH_EVENTS, None);
        drop(writer);
        let Ok(drained) = drained else {
            end_stream();
            return;
        };
        if ch.events.is_empty()
            && ch.stacks.is_empty()
            && FLUSHED.swap(flush_request, Ordering::AcqRel) != flush_request
        {
            FLUSH_DONE.ring();
        }
        // Sleep unless the queue filled up again during the round: writing
        // each trickle of events as it arrives would keep this thread and the
        // collector busy beside the program, for small frames. Producers ring
        // as the queue fills (`queue::push`), and flushes ring too.
        if drained < BATCH_EVENTS && !queue::filling_up(ch) {
            DOORBELL.sleep_since(seen, IDLE_SLEEP);
        }
    }
}

/// The collector is gone (or stuck past a flush's deadline): stop
/// recording and let waiting producers go.
fn end_stream() {
    STATE.store(DEAD, Ordering::Release);
    recorder::stop();
}

/// Whether the sender sleeps between rounds: only then need producers
/// watch how full the queue gets.
#[inline(always)]
pub fn is_asleep() -> bool {
    DOORBELL.has_sleeper()
}

/// Cuts the sender's idle sleep short (a producer found a queue filling up).
pub fn wake() {
    DOORBELL.ring();
}

/// A descriptor on which the collector's replies can be read, if the stream
/// goes to a collector (a trace file has no one to answer).
pub fn reply_fd() -> Option<i32> {
    descriptors::get(descriptors::REPLY).filter(|_| is_live())
}

/// Returns once everything queued before this call has been written, the
/// stream has ended, or `timeout` has passed. Writes it on this thread when
/// the writer is free (no wake-up of the sender, no waiting for its answer);
/// otherwise asks the sender, which is mid-round, and waits.
pub fn flush(timeout: Duration) {
    if !is_live() {
        return;
    }
    let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let deadline = clock::monotonic_ns().saturating_add(timeout_ns);
    if let (Some(mut writer), Some(ch)) = (writer::take(), queue::channel()) {
        let written = writer.write_queued(ch, deadline);
        drop(writer);
        if written.is_err() {
            end_stream();
        } else if FLUSH_REQUESTED.load(Ordering::Acquire) > FLUSHED.load(Ordering::Acquire) {
            // Another thread's flush found the writer taken and asked the sender.
            DOORBELL.ring();
        }
        return;
    }
    flush_by_sender(timeout);
}

/// Like [`flush`], but never writes on the calling thread: asks the sender
/// and waits for it. Allocates nothing, for callers that must not (`_exit`,
/// perhaps from a signal handler that interrupted the allocator).
pub fn flush_by_sender(timeout: Duration) {
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

/// Moves the shim's descriptor `fd` to another number, so that the
/// program's `dup2`/`dup3` onto `fd` can have it. The stream's own
/// descriptor is moved by whoever holds the writer, never under a round in
/// progress: this waits for the writer.
pub fn vacate_descriptor(fd: i32) {
    let Some(_guard) = Guard::enter() else { return };
    descriptors::vacate(fd, |role| {
        if role != descriptors::SINK {
            return descriptors::duplicate_high(fd);
        }
        loop {
            if let Some(mut writer) = writer::take() {
                return writer.relocate_sink();
            }
            // SAFETY: a plain sleep.
            unsafe { libc::usleep(1000) };
        }
    });
}

//! The exit leak scan: memcheck-grade leak classes at native speed.
//!
//! When the process exits normally the shim asks the collector for the set
//! of blocks it holds as live ([`memshim_proto::LiveSet`]), then looks for
//! pointers to them in its own memory, starting from the roots ([`roots`]),
//! and classifies each block as memcheck does ([`reach`]): definitely,
//! indirectly or possibly lost, or still reachable. The answer goes back as a
//! [`memshim_proto::LeakScan`] event before the end of the stream.
//!
//! The collector keeps the live set, so the hot path pays nothing for this.

mod heuristics;
mod memory;
mod page_filter;
mod reach;
mod roots;

use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use memshim_proto::framing::read_message;
use memshim_proto::{Event, LeakScan, LiveSet};

use crate::thread_state::Guard;
use crate::{clock, queue, recorder, sampler, sender, unwind};

/// How long to wait for the collector's live set.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the scan if the stream goes to a collector and every call was
/// recorded (a sampled live set cannot be classified block by block);
/// `entry_sp` is the stack pointer where the shim was entered (the frames
/// below it are the shim's).
pub fn run(entry_sp: u64, flush_timeout: Duration) {
    if sampler::enabled() {
        return;
    }
    let Some(fd) = sender::reply_fd() else { return };
    if !recorder::scan_request() {
        return;
    }
    sender::flush(flush_timeout);
    let Some(_guard) = Guard::enter() else { return };
    // SAFETY: `fd` stays open for the life of the process; ManuallyDrop keeps
    // this wrapper from closing it.
    let stream = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(fd) });
    if stream.set_read_timeout(Some(REPLY_TIMEOUT)).is_err() {
        return;
    }
    let Ok(live) = read_message::<LiveSet, _>(&mut &*stream) else {
        crate::warn("no live set from the collector; leaks are not classified");
        return;
    };
    let scan = classify(&live, entry_sp);
    if let Some(ch) = queue::channel() {
        ch.rare.push(Event::LeakScan(scan));
    }
}

fn classify(live: &LiveSet, entry_sp: u64) -> LeakScan {
    let start = clock::monotonic_ns();
    let mut reach = reach::Reach::new(&live.blocks);
    for (lo, hi) in roots::module_data(classify as *const () as u64) {
        reach.scan_root(lo, hi);
    }
    let own_slot = match unwind::current_thread() {
        Some((_, hi, slot)) => {
            reach.scan_root(entry_sp, hi);
            slot
        }
        None => None,
    };
    for (lo, hi) in unwind::other_thread_stacks(own_slot) {
        reach.scan_root(lo, hi);
    }
    if let Some((lo, hi)) = roots::own_tls() {
        reach.scan_root(lo, hi);
    }
    let (root_bytes, heap_bytes) = (reach.root_bytes, reach.heap_bytes);
    let classes = reach.finish();
    LeakScan {
        ts: clock::since_start_ns(),
        duration_ns: clock::monotonic_ns() - start,
        classes,
        root_bytes,
        heap_bytes,
    }
}

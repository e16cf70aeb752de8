//! Session-level tests: synthetic event sequences, real numbers.

use memshim_proto::{
    Alloc, AllocKind, End, EndReason, Event, Free, Hello, Mmap, Munmap, StackDef, Stats,
};

use super::*;

pub(crate) fn hello(pid: u32, forked_from: Option<u32>) -> Hello {
    Hello {
        pid,
        ppid: 1,
        forked_from,
        exe: "/bin/prog".into(),
        argv: vec!["prog".into(), "--flag".into()],
        start_unix_ns: 1_700_000_000_000_000_000,
        start_mono_ns: 0,
        sample_bytes: 0,
        stack_depth: 64,
        shim_version: "test".into(),
    }
}

pub(crate) fn alloc(ts: u64, tid: u32, addr: u64, size: u64, stack: u64, kind: AllocKind) -> Event {
    Event::Alloc(Alloc {
        ts,
        tid,
        addr,
        size,
        usable_size: size.next_multiple_of(16),
        stack,
        kind,
    })
}

pub(crate) fn malloc(ts: u64, addr: u64, size: u64, stack: u64) -> Event {
    alloc(ts, 1, addr, size, stack, AllocKind::Malloc)
}

pub(crate) fn free(ts: u64, tid: u32, addr: u64, realloc: bool) -> Event {
    Event::Free(Free {
        ts,
        tid,
        addr,
        realloc,
    })
}

pub(crate) fn end(ts: u64, reason: EndReason) -> Event {
    Event::End(End {
        ts,
        reason,
        lost_events: 0,
    })
}

fn run(events: Vec<Event>) -> Session {
    let mut s = Session::new(hello(100, None));
    for e in events {
        s.apply(e).unwrap();
    }
    s
}

const MS: u64 = 1_000_000;

#[test]
fn totals_live_set_and_peak() {
    let s = run(vec![
        malloc(MS, 0x1000, 100, 1),
        alloc(2 * MS, 1, 0x2000, 50, 2, AllocKind::Calloc),
        malloc(3 * MS, 0x3000, 30, 1),
        free(4 * MS, 1, 0x1000, false),
        free(5 * MS, 1, 0xdead, false),
        malloc(6 * MS, 0x4000, 10, 2),
        end(7 * MS, EndReason::Exit(0)),
    ]);
    let c = s.counters();
    assert_eq!(c.alloc_calls, 4);
    assert_eq!(c.free_calls, 2);
    assert_eq!(c.realloc_calls, 0);
    assert_eq!(c.blocks_allocated, 4);
    assert_eq!(c.blocks_freed, 1);
    assert_eq!(c.bytes_allocated, 190);
    assert_eq!(c.unknown_frees, 1);
    let h = s.heap();
    assert_eq!(h.live_bytes(), 90);
    assert_eq!(h.live().len(), 3);
    assert_eq!(h.peak_bytes(), 180);
    assert_eq!(h.peak_ts(), 3 * MS);
    let site1 = &h.sites()[&1];
    assert_eq!((site1.alloc_calls, site1.bytes_allocated), (2, 130));
    assert_eq!((site1.live_bytes, site1.live_blocks), (30, 1));
    assert_eq!(h.site_peak_bytes(site1), 130);
    assert_eq!(h.site_peak_bytes(&h.sites()[&2]), 50);
    assert_eq!(site1.lifetimes_ms.buckets()[0].le, 4); // freed after 3 ms
    assert_eq!(s.exit(), Exit::Code(0));
    assert_eq!(s.last_ts(), 7 * MS);
}

#[test]
fn realloc_moves_the_block_and_counts_both_sides() {
    let s = run(vec![
        malloc(1, 0x1000, 100, 1),
        free(2, 1, 0x1000, true),
        alloc(3, 1, 0x2000, 300, 2, AllocKind::Realloc),
    ]);
    let c = s.counters();
    assert_eq!((c.alloc_calls, c.realloc_calls, c.free_calls), (1, 1, 0));
    assert_eq!((c.blocks_allocated, c.blocks_freed), (2, 1));
    assert_eq!(c.bytes_allocated, 400);
    assert_eq!(s.heap().live_bytes(), 300);
    assert_eq!(s.heap().peak_bytes(), 300);
    assert_eq!(s.exit(), Exit::Running);
}

#[test]
fn failed_realloc_puts_the_block_back_unchanged() {
    let s = run(vec![
        malloc(1, 0x1000, 100, 1),
        free(2, 7, 0x1000, true),
        // Another thread's event does not settle thread 7's slot.
        malloc(3, 0x5000, 8, 3),
        Event::ReallocFailed {
            ts: 4,
            tid: 7,
            addr: 0x1000,
        },
    ]);
    let c = s.counters();
    assert_eq!(
        (c.blocks_freed, c.free_calls, c.duplicate_allocs),
        (0, 0, 0)
    );
    let block = s.heap().live().get(0x1000).unwrap();
    assert_eq!((block.size, block.stack, block.ts), (100, 1, 1));
    assert_eq!(s.heap().live_bytes(), 108);
    assert_eq!(s.heap().sites()[&1].live_blocks, 1);
}

#[test]
fn pending_realloc_is_dropped_by_any_other_event_of_the_thread() {
    let s = run(vec![
        malloc(1, 0x1000, 100, 1),
        free(2, 7, 0x1000, true),
        alloc(3, 7, 0x9000, 10, 2, AllocKind::Malloc),
        Event::ReallocFailed {
            ts: 4,
            tid: 7,
            addr: 0x1000,
        },
    ]);
    assert!(!s.heap().live().contains(0x1000));
    assert_eq!(s.counters().blocks_freed, 1);
    assert_eq!(s.heap().live_bytes(), 10);
    // A mismatching address does not resurrect anything either.
    let s = run(vec![
        malloc(1, 0x1000, 100, 1),
        free(2, 7, 0x1000, true),
        Event::ReallocFailed {
            ts: 4,
            tid: 7,
            addr: 0x2000,
        },
    ]);
    assert_eq!(s.heap().live_bytes(), 0);
}

#[test]
fn partial_munmap_and_mmap_totals() {
    let map = |addr, len, fd| {
        Event::Mmap(Mmap {
            ts: 1,
            tid: 1,
            addr,
            len,
            prot: 3,
            flags: if fd < 0 {
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE
            } else {
                libc::MAP_PRIVATE
            },
            fd,
            remap: false,
        })
    };
    let s = run(vec![
        map(0x10_0000, 0x10_000, -1),
        map(0x20_0000, 0x4000, 3),
        Event::Munmap(Munmap {
            ts: 2,
            tid: 1,
            addr: 0x10_4000,
            len: 0x4000,
            remap: false,
        }),
    ]);
    let m = s.mappings();
    assert_eq!(m.anonymous_bytes(), 0xc000);
    assert_eq!(m.file_bytes(), 0x4000);
    assert_eq!(m.live_bytes(), 0x10_000);
    assert_eq!(s.heap().live_bytes(), 0, "mappings are not heap");
}

#[test]
fn lost_is_a_running_total_and_end_reports_it() {
    let mut s = run(vec![Event::Lost { count: 5 }, Event::Lost { count: 12 }]);
    assert_eq!(s.counters().lost_events, 12);
    s.apply(Event::End(End {
        ts: 9,
        reason: EndReason::Exit(1),
        lost_events: 20,
    }))
    .unwrap();
    assert_eq!(s.counters().lost_events, 20);
    assert_eq!(s.exit(), Exit::Code(1));
}

#[test]
fn end_exec_followed_by_events_means_the_exec_failed() {
    let mut s = run(vec![malloc(1, 0x10, 8, 1), end(2, EndReason::Exec)]);
    assert_eq!(s.exit(), Exit::Exec);
    s.apply(malloc(3, 0x20, 8, 1)).unwrap();
    assert_eq!(s.exit(), Exit::Running);
    s.close();
    assert_eq!(s.exit(), Exit::Cut);
    assert_eq!(s.heap().live_bytes(), 16, "a cut stream keeps its live set");
}

/// A stream that stopped without its `End` while the process went on to
/// exit normally (the status `run` got from `waitpid`) is flagged: events
/// after the cut are missing. An orderly end, or a death by signal, is not.
#[test]
fn a_cut_stream_of_a_process_that_exited_normally_is_flagged() {
    let mut cut = run(vec![malloc(1, 0x10, 8, 1)]);
    assert!(!cut.stream_cut_early(), "still open");
    cut.close();
    assert!(!cut.stream_cut_early(), "cut, no exit status yet");
    cut.set_exit(Exit::Code(0));
    assert!(cut.stream_cut_early());
    cut.set_exit(Exit::Signal(libc::SIGKILL));
    assert!(!cut.stream_cut_early(), "a killed process is cut anyway");
    let mut ended = run(vec![malloc(1, 0x10, 8, 1), end(2, EndReason::Exit(0))]);
    ended.close();
    ended.set_exit(Exit::Code(0));
    assert!(!ended.stream_cut_early());
}

/// Older shims could write a last `Stats` (or `Lost`) after the `End`,
/// when the program had waited for the queue: the process still exited.
#[test]
fn statistics_after_the_end_do_not_undo_it() {
    let stats = Event::Stats(Stats {
        ts: 3,
        rss_bytes: 4096,
        heap_bytes: 0,
        heap_in_use_bytes: 0,
        queue_wait_ns: 5,
    });
    let mut s = run(vec![malloc(1, 0x10, 8, 1), end(2, EndReason::Exit(0))]);
    s.apply(stats).unwrap();
    s.apply(Event::Lost { count: 2 }).unwrap();
    s.close();
    assert_eq!(s.exit(), Exit::Code(0));
    assert_eq!(s.counters().lost_events, 2);
}

#[test]
fn stacks_may_be_defined_after_their_first_use() {
    let s = run(vec![
        malloc(1, 0x10, 8, 42),
        Event::Stack(StackDef {
            id: 42,
            frames: vec![0x401000, 0x402000],
        }),
    ]);
    assert_eq!(&**s.stack(42).unwrap(), &[0x401000, 0x402000]);
    assert!(s.heap().sites().get(&42).is_some());
}

#[test]
fn fork_child_inherits_live_set_with_fresh_counters() {
    let parent = run(vec![
        Event::Stack(StackDef {
            id: 1,
            frames: vec![0x401000],
        }),
        malloc(1, 0x10, 100, 1),
        malloc(2, 0x20, 50, 1),
        free(3, 1, 0x20, false),
    ]);
    let mut child = Session::forked(hello(101, Some(100)), parent.fork_snapshot());
    assert_eq!(child.heap().live_bytes(), 100);
    assert_eq!(child.heap().peak_bytes(), 100);
    assert_eq!(*child.counters(), Counters::default());
    assert!(child.stack(1).is_some());
    child.apply(free(5, 1, 0x10, false)).unwrap();
    child.apply(malloc(6, 0x30, 20, 2)).unwrap();
    let c = child.counters();
    assert_eq!(
        (c.alloc_calls, c.free_calls, c.blocks_freed, c.unknown_frees),
        (1, 1, 1, 0)
    );
    assert_eq!(child.heap().live_bytes(), 20);
    assert_eq!(child.heap().peak_bytes(), 100);
    assert_eq!(child.heap().site_peak_bytes(&child.heap().sites()[&1]), 100);
    assert_eq!(parent.heap().live_bytes(), 100, "the parent is untouched");
}

#[test]
fn stats_keep_the_latest_and_a_series() {
    let stats = |ts, rss| {
        Event::Stats(Stats {
            ts,
            rss_bytes: rss,
            heap_bytes: 1 << 20,
            heap_in_use_bytes: 1 << 19,
            queue_wait_ns: 0,
        })
    };
    let s = run(vec![
        stats(MS, 4096),
        malloc(2, 0x10, 64, 1),
        stats(2 * MS, 8192),
    ]);
    assert_eq!(s.latest_stats().unwrap().rss_bytes, 8192);
    let series = s.timeline().samples();
    assert_eq!(series.len(), 2);
    assert_eq!((series[1].t_ms, series[1].live_bytes), (2, 64));
}

#[test]
fn a_second_hello_is_a_protocol_error() {
    let mut s = run(vec![]);
    assert_eq!(
        s.apply(Event::Hello(hello(1, None))),
        Err(ProtocolError::SecondHello)
    );
}

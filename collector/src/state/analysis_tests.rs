//! Session-level tests of the figures the analysis rests on: distributions,
//! censored lifetimes, temporary and short-lived blocks, realloc chains,
//! per-site series and the report sections built from them.

use memshim_proto::{AllocKind, EndReason, Event, Hello};

use super::tests::{alloc, end, free, hello, malloc};
use super::*;
use crate::analysis::growth::{Classification, Severity};
use crate::registry::Registry;
use crate::report::build::{build_report, ReportOptions};
use crate::symbolize::SymbolCache;

const MS: u64 = 1_000_000;

fn run(events: Vec<Event>) -> Session {
    let mut s = Session::new(hello(100, None));
    for e in events {
        s.apply(e).unwrap();
    }
    s
}

#[test]
fn distributions_are_exact_and_live_blocks_are_censored() {
    let mut ev = Vec::new();
    // 9 blocks of 32 B freed after 5 ms, one of 4096 B never freed.
    for i in 0..9u64 {
        ev.push(malloc(i * 10 * MS, 0x1000 + i * 0x100, 32, 1));
        ev.push(free(i * 10 * MS + 5 * MS, 1, 0x1000 + i * 0x100, false));
    }
    ev.push(malloc(100 * MS, 0x9000, 4096, 1));
    let s = run(ev);
    let site = &s.heap().sites()[&1];
    assert_eq!(site.size_dist.percentile(0.5), 32);
    assert_eq!(site.size_dist.percentile(0.9), 32);
    assert_eq!(site.size_dist.percentile(0.99), 4096);
    assert_eq!(site.lifetime_dist.count(), 9);
    assert_eq!(site.lifetime_dist.percentile(0.99), 5);
    assert_eq!(site.live_blocks, 1, "the censored block");
    assert_eq!((site.freed_blocks, site.short_lived), (9, 9));
    assert_eq!(
        site.temporary, 9,
        "each freed before the thread's next allocation"
    );
    assert_eq!(s.sizes().1.count(), 10);
    assert_eq!(s.lifetimes().1.count(), 9);
}

#[test]
fn temporary_needs_no_allocation_in_between_on_the_same_thread() {
    let s = run(vec![
        malloc(MS, 0x10, 8, 1),
        malloc(2 * MS, 0x20, 8, 2),
        free(3 * MS, 1, 0x10, false), // another allocation came in between
        free(4 * MS, 1, 0x20, false), // the latest allocation: temporary
        malloc(5 * MS, 0x30, 8, 3),
        free(200 * MS, 1, 0x30, false), // temporary, but not short-lived
    ]);
    let sites = s.heap().sites();
    assert_eq!((sites[&1].temporary, sites[&1].short_lived), (0, 1));
    assert_eq!((sites[&2].temporary, sites[&2].short_lived), (1, 1));
    assert_eq!((sites[&3].temporary, sites[&3].short_lived), (1, 0));
}

#[test]
fn temporary_is_the_allocating_threads_own_latest_block() {
    let s = run(vec![
        alloc(MS, 1, 0x10, 8, 1, AllocKind::Malloc),
        free(2 * MS, 2, 0x10, false), // freed by another thread
        alloc(3 * MS, 1, 0x20, 8, 2, AllocKind::Malloc),
        free(4 * MS, 1, 0x20, true), // a realloc that fails: the block stays
        Event::ReallocFailed {
            ts: 5 * MS,
            tid: 1,
            addr: 0x20,
        },
        free(6 * MS, 1, 0x20, false), // still thread 1's latest: temporary
        alloc(7 * MS, 1, 0x30, 8, 3, AllocKind::Malloc),
        free(8 * MS, 2, 0x30, true), // thread 2 moves it by realloc
        alloc(9 * MS, 2, 0x40, 8, 3, AllocKind::Realloc),
        alloc(10 * MS, 3, 0x30, 8, 4, AllocKind::Malloc),
        free(11 * MS, 1, 0x30, false), // thread 3's block now
    ]);
    let sites = s.heap().sites();
    assert_eq!(sites[&1].temporary, 0);
    assert_eq!(sites[&2].temporary, 1);
    assert_eq!(sites[&3].temporary, 0);
    assert_eq!(sites[&4].temporary, 0);
}

#[test]
fn realloc_chains_are_counted_on_the_realloc_site() {
    let mut ev = vec![malloc(1, 0x100, 16, 1)];
    let mut addr = 0x100;
    for step in 1..=5u64 {
        ev.push(free(step * 10, 1, addr, true));
        addr += 0x100;
        ev.push(alloc(
            step * 10 + 1,
            1,
            addr,
            16 * (step + 1),
            2,
            AllocKind::Realloc,
        ));
    }
    // A shrink continues the chain but is no growth.
    ev.push(free(100, 1, addr, true));
    ev.push(alloc(101, 1, addr, 8, 2, AllocKind::Realloc));
    let s = run(ev);
    let site = &s.heap().sites()[&2];
    assert_eq!(site.realloc_grows, 5);
    assert_eq!(site.realloc_copied_bytes, 16 + 32 + 48 + 64 + 80);
    assert_eq!(site.max_chain, 6);
    assert_eq!(s.heap().live().get(addr).unwrap().chain, 6);
    assert_eq!(s.heap().live_bytes(), 8);
}

#[test]
fn the_report_flags_a_leak_from_ticks_and_keeps_churn_flat() {
    let registry = Registry::default();
    let handle = registry.open(hello(7, None));
    {
        let mut s = handle.lock();
        // 2 s: site 1 gains 4 KiB every 10 ms; site 2 replaces 10 blocks every 10 ms.
        let mut churn_addr = 0x1_0000_0000u64;
        for i in 0..10u64 {
            s.apply(malloc(0, churn_addr + i, 64, 2)).unwrap();
        }
        for step in 0..200u64 {
            let ts = step * 10 * MS + 1;
            s.apply(malloc(ts, 0x10_0000 + step * 0x1000, 4096, 1))
                .unwrap();
            for i in 0..10u64 {
                s.apply(free(ts, 1, churn_addr + i, false)).unwrap();
            }
            churn_addr += 0x100;
            for i in 0..10u64 {
                s.apply(malloc(ts, churn_addr + i, 64, 2)).unwrap();
            }
        }
    }
    let report = build_report(
        &registry,
        &SymbolCache::default(),
        &ReportOptions::new(10, None),
    );
    let p = &report.processes[0];
    assert_eq!(p.growth.len(), 1, "{:?}", p.growth);
    let g = &p.growth[0];
    assert_eq!(g.site.site, "0x1");
    assert_eq!(g.classification, Classification::Leak);
    assert_eq!(g.severity, Severity::High);
    assert!(
        (g.bytes_per_second - 409_600.0).abs() < 4_096.0,
        "{}",
        g.bytes_per_second
    );
    let kinds: Vec<(&str, &str)> = p
        .recommendations
        .iter()
        .map(|r| (r.site.site.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(kinds, vec![("0x1", "fix_leak")]);
    assert_eq!(p.recommendations[0].estimated_savings_bytes, 200 * 4096);
    assert_eq!(p.peak.owners[0].site.site, "0x1");
    assert_eq!(p.size_histogram.count, 10 + 200 * 11);
    assert_eq!(p.size_histogram.p50, 64);
    assert_eq!(p.lifetime_histogram.censored, 210);
    assert_eq!(p.allocation_rate.bin_ms, 100);
    assert_eq!(p.allocation_rate.max_per_second, 110 * 10 + 100);
    let churn = p.sites.iter().find(|s| s.id == "0x2").unwrap();
    assert_eq!(churn.lifetime_histogram.p50, 10);
    assert_eq!(churn.lifetime_histogram.censored, 10);
}

/// A pseudo-random stream, built to reach every condition of the fast path
/// for an allocation freed at once ([`Session::apply_pair`]) and its
/// fallbacks: short-lived pairs on 3 threads, long-lived blocks that raise
/// the peak, duplicate allocations of live addresses, reallocs (pending
/// between their two halves), frees of unknown addresses, and time that
/// jumps past the series ticks.
fn mixed_stream(seed: u64) -> Vec<Event> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut events = Vec::new();
    let mut ts = 0u64;
    let mut live: Vec<(u32, u64)> = Vec::new();
    for _ in 0..20_000 {
        let r = next();
        ts += if r % 97 == 0 { 7 * MS } else { r % 5_000 };
        let tid = 1 + (r >> 8) as u32 % 3;
        let addr = 0x1000 + (r >> 12) % 512 * 16;
        let size = 1 + (r >> 24) % 300;
        let stack = 1 + (r >> 40) % 6;
        match (r >> 50) % 10 {
            0..=5 => {
                events.push(alloc(ts, tid, addr, size, stack, AllocKind::Malloc));
                // Now and then the free comes in the next tick of the series.
                ts += if r % 11 == 0 { 3 * MS } else { r % 3 };
                events.push(free(ts, tid, addr, false));
            }
            6 => {
                events.push(alloc(ts, tid, addr, size, stack, AllocKind::Malloc));
                live.push((tid, addr));
            }
            7 => {
                if let Some((t, a)) = live.pop() {
                    events.push(free(ts, t, a, true));
                    if r % 4 == 0 {
                        // Not from a real shim (a thread's realloc is not
                        // split by its own calls), but a valid stream.
                        let other = addr ^ 0x8000;
                        events.push(alloc(ts, t, other, size, stack, AllocKind::Malloc));
                        events.push(free(ts, t, other, false));
                    }
                    events.push(alloc(ts, t, addr, size, stack, AllocKind::Realloc));
                    live.push((t, addr));
                }
            }
            8 => {
                if !live.is_empty() {
                    let (t, a) = live.swap_remove((r >> 20) as usize % live.len());
                    events.push(free(ts, t, a, false));
                }
            }
            _ => events.push(free(ts, tid, addr + 8, false)),
        }
    }
    events.push(end(ts + 1, EndReason::Exit(0)));
    events
}

fn report_json(events: &[Event], sample_bytes: u64, pairs: bool) -> String {
    let registry = Registry::default();
    let handle = registry.open(Hello {
        sample_bytes,
        ..hello(7, None)
    });
    {
        let mut s = handle.lock();
        let mut i = 0;
        while i < events.len() {
            if let (true, Event::Alloc(a), Some(Event::Free(f))) =
                (pairs, &events[i], events.get(i + 1))
            {
                if Session::is_pair(a, f) {
                    s.apply_pair(a, f);
                    i += 2;
                    continue;
                }
            }
            s.apply(events[i].clone()).unwrap();
            i += 1;
        }
    }
    let report = build_report(
        &registry,
        &SymbolCache::default(),
        &ReportOptions::new(50, None),
    );
    // The report holds no site series (only what growth finds in them):
    // they are compared as they are.
    let series: Vec<String> = handle
        .lock()
        .heap()
        .sites()
        .iter()
        .map(|(stack, site)| format!("{stack:?} {:?}", site.series))
        .collect();
    serde_json::to_string_pretty(&report).unwrap() + &series.join("\n")
}

#[test]
fn a_pair_applied_at_once_reports_exactly_as_its_two_events() {
    // The last stream as if sampled: its pairs must take the slow path.
    for (seed, sample_bytes) in [(1, 0), (2, 0), (3, 0), (0x5eed, 0), (4, 512)] {
        let events = mixed_stream(seed);
        let (one_by_one, paired) = (
            report_json(&events, sample_bytes, false),
            report_json(&events, sample_bytes, true),
        );
        if one_by_one != paired {
            let line = one_by_one
                .lines()
                .zip(paired.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let around = |text: &str| {
                let lines: Vec<&str> = text.lines().skip(line.saturating_sub(5)).take(12).collect();
                lines.join("\n")
            };
            panic!(
                "seed {seed}: reports differ from line {line}:\n{}\n--- paired:\n{}",
                around(&one_by_one),
                around(&paired)
            );
        }
    }
}

#[test]
fn reports_made_as_streams_close_give_the_same_report() {
    use crate::report::build::build_report_with;
    use crate::report::early::EarlyReports;
    use std::sync::Arc;

    let registry = Registry::default();
    let options = ReportOptions::new(10, None);
    let cache = Arc::new(SymbolCache::default());
    let early = EarlyReports::start(options.clone(), Arc::clone(&cache));
    {
        let early = Arc::clone(&early);
        registry.on_close(Box::new(move |handle| early.queue(handle)));
    }
    // An exit with its code, a cut stream, and an exit whose code only the
    // reaper learns (after the draft: that one must be drafted again).
    let endings = [
        Some(EndReason::Exit(3)),
        None,
        Some(EndReason::ExitCodeUnknown),
    ];
    for (i, ending) in endings.into_iter().enumerate() {
        let pid = 100 + i as u32;
        let handle = registry.open(hello(pid, None));
        {
            let mut s = handle.lock();
            for b in 0..20u64 {
                s.apply(malloc(b * MS, 0x1000 + b * 0x100, 64 + b, 1 + b % 3))
                    .unwrap();
                if b % 2 == 0 {
                    s.apply(free(b * MS + 1, 1, 0x1000 + b * 0x100, false))
                        .unwrap();
                }
            }
            if let Some(reason) = ending {
                s.apply(end(30 * MS, reason)).unwrap();
            }
        }
        registry.close(&handle);
    }
    early.wait();
    assert_eq!(early.made(), 3);
    registry.refine_exit(102, Exit::Signal(9));
    let ahead = build_report_with(&registry, &cache, &options, Some(&early));
    let fresh = build_report(&registry, &cache, &options);
    assert_eq!(ahead, fresh);
    let exits: Vec<Exit> = fresh.processes.iter().map(|p| p.exit).collect();
    assert_eq!(exits, [Exit::Code(3), Exit::Cut, Exit::Signal(9)]);
}

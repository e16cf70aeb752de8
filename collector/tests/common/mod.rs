//! Synthetic events shared by the collector's integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use memshim_proto::{Alloc, AllocKind, End, EndReason, Event, Free, Hello};

/// A `Hello` for a synthetic process.
pub fn hello(pid: u32, forked_from: Option<u32>, start_ms: u64) -> Event {
    Event::Hello(Hello {
        pid,
        ppid: 1,
        forked_from,
        exe: "/bin/synthetic".into(),
        argv: vec!["synthetic".into(), pid.to_string()],
        start_unix_ns: start_ms * 1_000_000,
        start_mono_ns: 0,
        sample_bytes: 0,
        stack_depth: 64,
        shim_version: "test".into(),
    })
}

/// A `malloc` of `size` bytes at `addr` from thread 1.
pub fn malloc(ts: u64, addr: u64, size: u64, stack: u64) -> Event {
    Event::Alloc(Alloc {
        ts,
        tid: 1,
        addr,
        size,
        usable_size: size,
        stack,
        kind: AllocKind::Malloc,
    })
}

/// A `free` of `addr` from thread 1.
pub fn free(ts: u64, addr: u64) -> Event {
    Event::Free(Free {
        ts,
        tid: 1,
        addr,
        realloc: false,
    })
}

/// An orderly end with exit `code`.
pub fn end(ts: u64, code: i32) -> Event {
    Event::End(End {
        ts,
        reason: EndReason::Exit(code),
        lost_events: 0,
    })
}

//! The compact form events take on the wire.
//!
//! Most of a stream is allocations and frees. On the wire they carry
//! differences rather than values: time since the previous event (in
//! microseconds), thread id and address relative to the previous event's
//! (zigzag varints), the usable size as slack over the requested size, and
//! the stack as a small per-stream index instead of its 64-bit hash. The
//! kind is folded into the variant tag. Everything else travels as is.
//!
//! [`Encoder`] and [`Decoder`] hold the state the differences are relative
//! to; one of each per stream, fed every frame in order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Alloc, AllocKind, Event, Free, StackId};

/// One event as encoded in a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Wire {
    /// Any event without a compact form.
    Full(Event),
    /// Gives `id` the next stack index (0, 1, 2, … in order of appearance).
    NewStack(StackId),
    /// `malloc`
    Malloc(CompactAlloc),
    /// `calloc`
    Calloc(CompactAlloc),
    /// `realloc`
    Realloc(CompactAlloc),
    /// aligned allocations
    Aligned(CompactAlloc),
    /// `free`
    Free(CompactFree),
    /// the old block of a `realloc`
    ReallocFree(CompactFree),
}

/// An allocation, relative to the previous event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompactAlloc {
    dt_us: i64,
    dtid: i64,
    daddr: i64,
    size: u64,
    slack: u64,
    stack: u32,
}

/// A release, relative to the previous event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompactFree {
    dt_us: i64,
    dtid: i64,
    daddr: i64,
}

/// What the differences of both sides are relative to.
#[derive(Debug, Default)]
struct Base {
    ts_us: u64,
    tid: u32,
    addr: u64,
}

impl Base {
    fn delta(&mut self, ts: u64, tid: u32, addr: u64) -> (i64, i64, i64) {
        let ts_us = ts / 1000;
        let out = (
            ts_us.wrapping_sub(self.ts_us) as i64,
            i64::from(tid) - i64::from(self.tid),
            addr.wrapping_sub(self.addr) as i64,
        );
        self.ts_us = ts_us;
        self.tid = tid;
        self.addr = addr;
        out
    }

    fn apply(&mut self, dt_us: i64, dtid: i64, daddr: i64) -> (u64, u32, u64) {
        self.ts_us = self.ts_us.wrapping_add(dt_us as u64);
        self.tid = (i64::from(self.tid) + dtid) as u32;
        self.addr = self.addr.wrapping_add(daddr as u64);
        (self.ts_us * 1000, self.tid, self.addr)
    }
}

/// Turns a stream's events into their wire form.
#[derive(Debug, Default)]
pub struct Encoder {
    base: Base,
    stacks: HashMap<StackId, u32>,
}

impl Encoder {
    fn stack_index(&mut self, id: StackId, out: &mut Vec<Wire>) -> u32 {
        let next = self.stacks.len() as u32;
        *self.stacks.entry(id).or_insert_with(|| {
            out.push(Wire::NewStack(id));
            next
        })
    }

    pub(crate) fn encode(&mut self, events: &[Event]) -> Vec<Wire> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match *event {
                Event::Alloc(a) => {
                    let stack = self.stack_index(a.stack, &mut out);
                    let (dt_us, dtid, daddr) = self.base.delta(a.ts, a.tid, a.addr);
                    let c = CompactAlloc {
                        dt_us,
                        dtid,
                        daddr,
                        size: a.size,
                        slack: a.usable_size.wrapping_sub(a.size),
                        stack,
                    };
                    out.push(match a.kind {
                        AllocKind::Malloc => Wire::Malloc(c),
                        AllocKind::Calloc => Wire::Calloc(c),
                        AllocKind::Realloc => Wire::Realloc(c),
                        AllocKind::Aligned => Wire::Aligned(c),
                    });
                }
                Event::Free(f) => {
                    let (dt_us, dtid, daddr) = self.base.delta(f.ts, f.tid, f.addr);
                    let c = CompactFree { dt_us, dtid, daddr };
                    out.push(if f.realloc {
                        Wire::ReallocFree(c)
                    } else {
                        Wire::Free(c)
                    });
                }
                ref other => out.push(Wire::Full(other.clone())),
            }
        }
        out
    }
}

/// Turns wire forms back into events.
#[derive(Debug, Default)]
pub struct Decoder {
    base: Base,
    stacks: Vec<StackId>,
}

impl Decoder {
    pub(crate) fn decode(&mut self, wire: Vec<Wire>) -> Result<Vec<Event>, String> {
        let mut out = Vec::with_capacity(wire.len());
        for w in wire {
            let (c, kind) = match w {
                Wire::Full(e) => {
                    out.push(e);
                    continue;
                }
                Wire::NewStack(id) => {
                    self.stacks.push(id);
                    continue;
                }
                Wire::Free(f) | Wire::ReallocFree(f) => {
                    let realloc = matches!(w, Wire::ReallocFree(_));
                    let (ts, tid, addr) = self.base.apply(f.dt_us, f.dtid, f.daddr);
                    out.push(Event::Free(Free {
                        ts,
                        tid,
                        addr,
                        realloc,
                    }));
                    continue;
                }
                Wire::Malloc(c) => (c, AllocKind::Malloc),
                Wire::Calloc(c) => (c, AllocKind::Calloc),
                Wire::Realloc(c) => (c, AllocKind::Realloc),
                Wire::Aligned(c) => (c, AllocKind::Aligned),
            };
            let stack = *self
                .stacks
                .get(c.stack as usize)
                .ok_or_else(|| format!("stack index {} was never declared", c.stack))?;
            let (ts, tid, addr) = self.base.apply(c.dt_us, c.dtid, c.daddr);
            out.push(Event::Alloc(Alloc {
                ts,
                tid,
                addr,
                size: c.size,
                usable_size: c.size.wrapping_add(c.slack),
                stack,
                kind,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ts: u64, tid: u32, addr: u64, stack: StackId) -> Event {
        Event::Alloc(Alloc {
            ts,
            tid,
            addr,
            size: 40,
            usable_size: 40 + 8,
            stack,
            kind: AllocKind::Realloc,
        })
    }

    fn free(ts: u64, tid: u32, addr: u64) -> Event {
        Event::Free(Free {
            ts,
            tid,
            addr,
            realloc: true,
        })
    }

    #[test]
    fn differences_survive_threads_going_back_in_time_and_address() {
        let events = vec![
            alloc(5_000_000, 900, 0x7f00_0000_1000, 77),
            alloc(4_000_000, 12, 0x5500_0000_0010, u64::MAX),
            free(4_000_000, 12, 0x7f00_0000_1000),
            alloc(9_000_000, 900, 0x10, 77),
        ];
        let mut enc = Encoder::default();
        let mut dec = Decoder::default();
        let wire = enc.encode(&events);
        assert_eq!(
            wire.iter()
                .filter(|w| matches!(w, Wire::NewStack(_)))
                .count(),
            2
        );
        assert_eq!(dec.decode(wire).unwrap(), events);
        // State carries over to the next batch: the known stack needs no declaration.
        let more = vec![alloc(9_001_000, 900, 0x20, 77)];
        let wire = enc.encode(&more);
        assert_eq!(wire.len(), 1);
        assert_eq!(dec.decode(wire).unwrap(), more);
    }

    #[test]
    fn timestamps_travel_in_microseconds() {
        let mut enc = Encoder::default();
        let mut dec = Decoder::default();
        let back = dec.decode(enc.encode(&[free(1_234_567, 1, 8)])).unwrap();
        assert_eq!(back, vec![free(1_234_000, 1, 8)]);
    }

    #[test]
    fn an_undeclared_stack_index_is_an_error() {
        let c = CompactAlloc {
            dt_us: 0,
            dtid: 0,
            daddr: 0,
            size: 1,
            slack: 0,
            stack: 3,
        };
        assert!(Decoder::default().decode(vec![Wire::Malloc(c)]).is_err());
    }
}

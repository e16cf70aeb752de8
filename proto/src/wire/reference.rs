//! The wire form as a serde enum, coded by bincode: what this crate did
//! before [`super::Encoder`] and [`super::Decoder`] coded it by hand, kept
//! as the reference their bytes are checked against.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Base;
use crate::event::{Alloc, AllocKind, Event, Free, StackId};
use crate::framing::config;

/// One event as encoded in a frame (the variant order is the tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Wire {
    Full(Event),
    NewStack(StackId),
    Malloc(CompactAlloc),
    Calloc(CompactAlloc),
    Realloc(CompactAlloc),
    Aligned(CompactAlloc),
    Free(CompactFree),
    ReallocFree(CompactFree),
}

/// An allocation, relative to the previous event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CompactAlloc {
    pub(super) dt_us: i64,
    pub(super) dtid: i64,
    pub(super) daddr: i64,
    pub(super) size: u64,
    pub(super) slack: u64,
    pub(super) stack: u32,
}

/// A release, relative to the previous event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CompactFree {
    dt_us: i64,
    dtid: i64,
    daddr: i64,
}

/// The previous encoder: events to `Vec<Wire>`, then bincode.
#[derive(Debug, Default)]
pub(super) struct RefEncoder {
    base: Base,
    stacks: HashMap<StackId, u32>,
}

impl RefEncoder {
    fn stack_index(&mut self, id: StackId, out: &mut Vec<Wire>) -> u32 {
        let next = self.stacks.len() as u32;
        *self.stacks.entry(id).or_insert_with(|| {
            out.push(Wire::NewStack(id));
            next
        })
    }

    pub(super) fn encode(&mut self, events: &[Event]) -> Vec<Wire> {
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

    /// The payload of a frame holding `events`.
    pub(super) fn encode_batch(&mut self, events: &[Event]) -> Vec<u8> {
        bincode::serde::encode_to_vec(self.encode(events), config()).unwrap()
    }
}

/// The previous decoder: bincode to `Vec<Wire>`, then events.
#[derive(Debug, Default)]
pub(super) struct RefDecoder {
    base: Base,
    stacks: Vec<StackId>,
}

impl RefDecoder {
    pub(super) fn decode(&mut self, wire: Vec<Wire>) -> Result<Vec<Event>, String> {
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

    /// The events of a frame's payload.
    pub(super) fn decode_batch(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let (wire, used): (Vec<Wire>, usize) =
            bincode::serde::decode_from_slice(payload, config()).map_err(|e| e.to_string())?;
        if used != payload.len() {
            return Err(format!("{} trailing bytes", payload.len() - used));
        }
        self.decode(wire)
    }
}

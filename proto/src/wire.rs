//! The compact form events take on the wire.
//!
//! Most of a stream is allocations and frees. On the wire they carry
//! differences rather than values: time since the previous event (in
//! microseconds), thread id and address relative to the previous event's
//! (zigzag varints), the usable size as slack over the requested size, and
//! the stack as a small per-stream index instead of its 64-bit hash. The
//! kind is folded into the variant tag. Everything else travels as is.
//!
//! A batch is what bincode 2 (standard config) makes of a `Vec` of this enum
//! (field order as listed; `i64` are the differences):
//!
//! ```text
//! enum Wire {
//!     Full(Event),              // 0: any event without a compact form
//!     NewStack(StackId),        // 1: gives the id the next stack index (0, 1, 2, …)
//!     Malloc(CompactAlloc),     // 2
//!     Calloc(CompactAlloc),     // 3
//!     Realloc(CompactAlloc),    // 4
//!     Aligned(CompactAlloc),    // 5
//!     Free(CompactFree),        // 6
//!     ReallocFree(CompactFree), // 7: the old block of a `realloc`
//! }
//! CompactAlloc { dt_us: i64, dtid: i64, daddr: i64, size: u64, slack: u64, stack: u32 }
//! CompactFree  { dt_us: i64, dtid: i64, daddr: i64 }
//! ```
//!
//! [`Encoder`] and [`Decoder`] write and read those bytes directly, for
//! speed (the private `varint` module says why by hand); only [`Event`]s
//! without a compact form go through bincode. The tests check the bytes
//! against bincode's own serialization of that enum.
//!
//! [`Encoder`] and [`Decoder`] hold the state the differences are relative
//! to; one of each per stream, fed every frame in order.

use rustc_hash::FxHashMap;
use std::fmt;

use crate::event::{Alloc, AllocKind, Event, Free, StackId};
use crate::framing::config;
use crate::varint::{self, Reader, VarintError};

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

/// Variant tags, in the order of the enum above (each one byte on the wire: all are under 251).
const FULL: u32 = 0;
const NEW_STACK: u32 = 1;
const MALLOC: u32 = 2;
const CALLOC: u32 = 3;
const REALLOC: u32 = 4;
const ALIGNED: u32 = 5;
const FREE: u32 = 6;
const REALLOC_FREE: u32 = 7;

/// Fewest bytes an element of a batch takes (a tag and a varint).
const MIN_ELEMENT_LEN: usize = 2;
/// Most events room is made for before any is decoded, whatever the batch claims.
const MAX_PREALLOC: usize = 1 << 16;
/// Most elements a batch may hold. The shim sends at most 16 Ki events (and
/// their new stacks) per batch; the limit keeps a hostile 64 MiB frame of
/// 2-byte elements from costing the collector gigabytes of decoded events.
pub(crate) const MAX_BATCH_ELEMENTS: u64 = 1 << 20;

/// What the differences of both sides are relative to.
#[derive(Debug, Default)]
struct Base {
    ts_us: u64,
    tid: u32,
    addr: u64,
}

impl Base {
    #[inline]
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

    /// Wrapping throughout: corrupt differences give odd values, never a panic.
    #[inline]
    fn apply(&mut self, dt_us: i64, dtid: i64, daddr: i64) -> (u64, u32, u64) {
        self.ts_us = self.ts_us.wrapping_add(dt_us as u64);
        self.tid = i64::from(self.tid).wrapping_add(dtid) as u32;
        self.addr = self.addr.wrapping_add(daddr as u64);
        (self.ts_us.wrapping_mul(1000), self.tid, self.addr)
    }
}

/// Turns a stream's events into their wire form.
#[derive(Debug, Default)]
pub struct Encoder {
    base: Base,
    /// Stack ids are already hashes of their frames, so a multiplicative
    /// hash (FxHash) spreads them as well as SipHash at a fraction of the cost.
    stacks: FxHashMap<StackId, u32>,
    /// The last stack looked up and its index: allocations in a loop skip the map.
    last_stack: Option<(StackId, u32)>,
}

impl Encoder {
    /// Appends the batch of `events` (the payload of a frame) to `out`: what
    /// the tests compare with bincode's bytes.
    #[cfg(test)]
    pub(crate) fn encode_batch(&mut self, events: &[Event], out: &mut Vec<u8>) {
        let mut batch = BatchEncoder::begin(self, out, events.len());
        for event in events {
            batch.event(event);
        }
        batch.finish();
    }

    /// The index of stack `id`, declaring it first (one more element) if it is new.
    #[inline]
    fn stack_index(&mut self, id: StackId, out: &mut Vec<u8>, count: &mut usize) -> u32 {
        if let Some((last, index)) = self.last_stack {
            if last == id {
                return index;
            }
        }
        let next = self.stacks.len() as u32;
        let index = *self.stacks.entry(id).or_insert_with(|| {
            out.push(NEW_STACK as u8);
            varint::put_u64(out, id);
            *count += 1;
            next
        });
        self.last_stack = Some((id, index));
        index
    }

    #[inline]
    fn put_position(&mut self, ts: u64, tid: u32, addr: u64, out: &mut Vec<u8>) {
        let (dt_us, dtid, daddr) = self.base.delta(ts, tid, addr);
        varint::put_i64(out, dt_us);
        varint::put_i64(out, dtid);
        varint::put_i64(out, daddr);
    }
}

/// A batch being encoded event by event, appended to a buffer (see
/// [`crate::framing::FrameEncoder`], which wraps it in a frame).
pub(crate) struct BatchEncoder<'a> {
    encoder: &'a mut Encoder,
    out: &'a mut Vec<u8>,
    /// Where the element count goes, and the bytes left for it.
    start: usize,
    room: usize,
    /// Elements so far, `NewStack`s included.
    count: usize,
}

impl<'a> BatchEncoder<'a> {
    /// Starts a batch at the end of `out`, leaving room for the element
    /// count of about `expected` events (a wrong guess costs a shift of the
    /// bytes at the end, never a wrong count).
    pub(crate) fn begin(encoder: &'a mut Encoder, out: &'a mut Vec<u8>, expected: usize) -> Self {
        let start = out.len();
        let room = varint::len_u64(expected as u64);
        out.resize(start + room, 0);
        BatchEncoder {
            encoder,
            out,
            start,
            room,
            count: 0,
        }
    }

    /// Appends any event: the compact form of allocations and frees, bincode for the rest.
    pub(crate) fn event(&mut self, event: &Event) {
        match event {
            Event::Alloc(a) => self.alloc(a),
            Event::Free(f) => self.free(f),
            other => {
                self.count += 1;
                self.out.push(FULL as u8);
                bincode::serde::encode_into_std_write(other, &mut *self.out, config())
                    .expect("writing to a Vec cannot fail");
            }
        }
    }

    /// Appends an allocation (declaring its stack first if it is new).
    #[inline]
    pub(crate) fn alloc(&mut self, a: &Alloc) {
        let stack = self.encoder.stack_index(a.stack, self.out, &mut self.count);
        let tag = match a.kind {
            AllocKind::Malloc => MALLOC,
            AllocKind::Calloc => CALLOC,
            AllocKind::Realloc => REALLOC,
            AllocKind::Aligned => ALIGNED,
        };
        self.count += 1;
        self.out.push(tag as u8);
        self.encoder.put_position(a.ts, a.tid, a.addr, self.out);
        varint::put_u64(self.out, a.size);
        varint::put_u64(self.out, a.usable_size.wrapping_sub(a.size));
        varint::put_u64(self.out, u64::from(stack));
    }

    /// Appends a free.
    #[inline]
    pub(crate) fn free(&mut self, f: &Free) {
        self.count += 1;
        self.out
            .push(if f.realloc { REALLOC_FREE } else { FREE } as u8);
        self.encoder.put_position(f.ts, f.tid, f.addr, self.out);
    }

    /// Whether no event was appended yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the element count in front of the batch; gives back the buffer.
    pub(crate) fn finish(self) -> &'a mut Vec<u8> {
        let (prefix, len) = varint::encode_u64(self.count as u64);
        let start = self.start;
        if len == self.room {
            self.out[start..start + len].copy_from_slice(&prefix[..len]);
        } else {
            self.out
                .splice(start..start + self.room, prefix[..len].iter().copied());
        }
        self.out
    }
}

/// Why a payload is not a valid batch.
#[derive(Debug)]
pub(crate) enum WireError {
    /// A malformed or truncated integer.
    Varint(VarintError),
    /// An element tag beyond the last variant.
    Tag(u32),
    /// An allocation refers to a stack index no `NewStack` gave out.
    UndeclaredStack(u32),
    /// An event without a compact form that bincode could not decode.
    Full(bincode::error::DecodeError),
    /// Bytes left over after the last element.
    Trailing(usize),
    /// A batch claiming more than [`MAX_BATCH_ELEMENTS`] elements.
    TooMany(u64),
}

impl From<VarintError> for WireError {
    fn from(e: VarintError) -> Self {
        WireError::Varint(e)
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Varint(e) => write!(f, "{e}"),
            WireError::Tag(t) => write!(f, "unknown element tag {t}"),
            WireError::UndeclaredStack(i) => write!(f, "stack index {i} was never declared"),
            WireError::Full(e) => write!(f, "{e}"),
            WireError::Trailing(n) => write!(f, "{n} trailing bytes after a batch"),
            WireError::TooMany(n) => write!(
                f,
                "a batch of {n} elements exceeds the limit of {MAX_BATCH_ELEMENTS}"
            ),
        }
    }
}

/// Turns wire forms back into events.
///
/// After an error the state is undefined: a stream cannot go on past a bad frame.
#[derive(Debug, Default)]
pub struct Decoder {
    base: Base,
    stacks: Vec<StackId>,
}

impl Decoder {
    /// Decodes a whole batch (the payload of a frame).
    pub(crate) fn decode_batch(&mut self, payload: &[u8]) -> Result<Vec<Event>, WireError> {
        let mut r = Reader::new(payload);
        let count = r.u64()?;
        if count > MAX_BATCH_ELEMENTS {
            return Err(WireError::TooMany(count));
        }
        let room = (count.min(MAX_PREALLOC as u64) as usize).min(payload.len() / MIN_ELEMENT_LEN);
        let mut out = Vec::with_capacity(room);
        for _ in 0..count {
            let tag = r.u32()?;
            let kind = match tag {
                MALLOC => AllocKind::Malloc,
                CALLOC => AllocKind::Calloc,
                REALLOC => AllocKind::Realloc,
                ALIGNED => AllocKind::Aligned,
                FREE | REALLOC_FREE => {
                    let realloc = tag == REALLOC_FREE;
                    let (ts, tid, addr) = self.read_position(&mut r)?;
                    out.push(Event::Free(Free {
                        ts,
                        tid,
                        addr,
                        realloc,
                    }));
                    continue;
                }
                NEW_STACK => {
                    self.stacks.push(r.u64()?);
                    continue;
                }
                FULL => {
                    let (event, used) = bincode::serde::decode_from_slice(r.rest(), config())
                        .map_err(WireError::Full)?;
                    r.advance(used);
                    out.push(event);
                    continue;
                }
                _ => return Err(WireError::Tag(tag)),
            };
            let (dt_us, dtid, daddr) = (r.i64()?, r.i64()?, r.i64()?);
            let size = r.u64()?;
            let slack = r.u64()?;
            let index = r.u32()?;
            let stack = *self
                .stacks
                .get(index as usize)
                .ok_or(WireError::UndeclaredStack(index))?;
            let (ts, tid, addr) = self.base.apply(dt_us, dtid, daddr);
            out.push(Event::Alloc(Alloc {
                ts,
                tid,
                addr,
                size,
                usable_size: size.wrapping_add(slack),
                stack,
                kind,
            }));
        }
        match r.rest().len() {
            0 => Ok(out),
            n => Err(WireError::Trailing(n)),
        }
    }

    #[inline]
    fn read_position(&mut self, r: &mut Reader<'_>) -> Result<(u64, u32, u64), VarintError> {
        let (dt_us, dtid, daddr) = (r.i64()?, r.i64()?, r.i64()?);
        Ok(self.base.apply(dt_us, dtid, daddr))
    }
}

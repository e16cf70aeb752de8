//! How events travel: a stream header, then length-prefixed batches.
//!
//! The same bytes go over the Unix socket and into a trace file, so a saved
//! trace is exactly what the collector would have received:
//!
//! ```text
//! stream  := header frame*
//! header  := STREAM_MAGIC (8 bytes) version (u32 little endian)
//! frame   := length (u32 little endian) payload
//! payload := bincode 2 (standard config: varints) of the batch's wire form
//! ```
//!
//! The wire form ([`crate::wire`]) codes allocations and frees as differences
//! from the previous event, and varints keep those small numbers short: a
//! stream is stateful, decoded frame after frame from its start. Batches are
//! coded by hand, byte for byte as bincode codes them; only events without a
//! compact form go through bincode itself.

use std::io::{self, Read, Write};

use crate::event::{Alloc, Event, Free};
use crate::wire::{BatchEncoder, Decoder, Encoder};

/// The first eight bytes of every event stream and trace file.
pub const STREAM_MAGIC: [u8; 8] = *b"MEMSHIM\x00";

/// Version of the event format. Bump it on any incompatible change to
/// [`Event`] or to the wire form.
pub const PROTOCOL_VERSION: u32 = 6;

/// Length of the stream header in bytes.
pub const HEADER_LEN: usize = 12;

/// Largest frame a reader accepts; anything larger means a corrupt or hostile stream.
pub const MAX_FRAME_LEN: usize = 64 << 20;

/// bincode's configuration for everything in a frame.
pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// What can go wrong while reading a stream.
#[derive(Debug)]
pub enum FrameError {
    /// The underlying reader failed.
    Io(io::Error),
    /// The stream does not start with [`STREAM_MAGIC`].
    BadMagic,
    /// The stream was written with another, incompatible version of the format.
    Version(u32),
    /// A frame length over [`MAX_FRAME_LEN`].
    FrameTooLarge(usize),
    /// A frame whose payload is not a valid batch of events.
    Decode(String),
    /// The stream ended in the middle of a frame.
    Truncated,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "read error: {e}"),
            FrameError::BadMagic => write!(f, "not a memshim stream (bad magic bytes)"),
            FrameError::Version(v) => write!(
                f,
                "stream format version {v} is not supported (this build reads version {PROTOCOL_VERSION})"
            ),
            FrameError::FrameTooLarge(n) => {
                write!(f, "corrupt stream: frame of {n} bytes exceeds the {MAX_FRAME_LEN}-byte limit")
            }
            FrameError::Decode(e) => write!(f, "corrupt stream: {e}"),
            FrameError::Truncated => write!(f, "stream ends in the middle of a frame"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// The header bytes that open a stream of the current version.
pub fn stream_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&STREAM_MAGIC);
    h[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    h
}

/// Checks a stream header, returning its version if this build can read it.
pub fn check_header(header: &[u8; HEADER_LEN]) -> Result<u32, FrameError> {
    if header[..8] != STREAM_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let version = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    Ok(version)
}

impl Encoder {
    /// Appends one frame holding `events` to `out` (length prefix included).
    ///
    /// Encoding into a caller-owned buffer lets the sender reuse one
    /// allocation for every batch.
    pub fn encode_frame(&mut self, events: &[Event], out: &mut Vec<u8>) {
        let mut frame = self.begin_frame(out, events.len());
        for event in events {
            frame.event(event);
        }
        frame.finish();
    }

    /// Starts a frame at the end of `out`, to be filled event by event and
    /// closed with [`FrameEncoder::finish`]. `expected`, the number of events
    /// it will likely hold, only sizes the room left for their count.
    pub fn begin_frame<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        expected: usize,
    ) -> FrameEncoder<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        FrameEncoder {
            batch: BatchEncoder::begin(self, out, expected),
            start,
        }
    }
}

/// One frame being encoded event by event ([`Encoder::begin_frame`]).
///
/// The shim's sender encodes each event as it takes it from its queue:
/// building a `Vec<Event>` first (120 bytes an event) and encoding it after
/// costs a copy, a pass over 2 MiB and a drop per event.
pub struct FrameEncoder<'a> {
    batch: BatchEncoder<'a>,
    /// Where the frame's length prefix is.
    start: usize,
}

impl FrameEncoder<'_> {
    /// Appends any event.
    pub fn event(&mut self, event: &Event) {
        self.batch.event(event);
    }

    /// Appends an allocation, the most frequent event.
    #[inline]
    pub fn alloc(&mut self, alloc: &Alloc) {
        self.batch.alloc(alloc);
    }

    /// Appends a free, the other most frequent event.
    #[inline]
    pub fn free(&mut self, free: &Free) {
        self.batch.free(free);
    }

    /// Whether no event was appended yet.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Completes the frame: its element count and length prefix.
    pub fn finish(self) {
        let out = self.batch.finish();
        let len = (out.len() - self.start - 4) as u32;
        out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

impl Decoder {
    /// Decodes the payload of one frame (without its length prefix).
    pub fn decode_payload(&mut self, payload: &[u8]) -> Result<Vec<Event>, FrameError> {
        self.decode_batch(payload)
            .map_err(|e| FrameError::Decode(e.to_string()))
    }
}

/// Appends one frame holding any serializable message (the collector's
/// replies, such as [`crate::LiveSet`]), length prefix included.
pub fn encode_message<T: serde::Serialize>(message: &T, out: &mut Vec<u8>) {
    framed(out, |out| {
        bincode::serde::encode_into_std_write(message, out, config())
            .expect("writing to a Vec cannot fail");
    });
}

/// Appends the length prefix, then the payload `write` appends, then fills the prefix in.
fn framed(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads one frame written by [`encode_message`].
pub fn read_message<T: serde::de::DeserializeOwned, R: Read>(
    reader: &mut R,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    read_exact_or(reader, &mut len, FrameError::Truncated)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::FrameTooLarge(len));
    }
    let mut buf = vec![0u8; len];
    read_exact_or(reader, &mut buf, FrameError::Truncated)?;
    let (message, used): (T, usize) = bincode::serde::decode_from_slice(&buf, config())
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if used != len {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after a message",
            len - used
        )));
    }
    Ok(message)
}

/// Reads a stream frame by frame.
pub struct FrameReader<R> {
    reader: R,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl<R: Read> FrameReader<R> {
    /// Reads and checks the header, then returns a reader positioned at the first frame.
    pub fn new(mut reader: R) -> Result<Self, FrameError> {
        let mut header = [0u8; HEADER_LEN];
        read_exact_or(&mut reader, &mut header, FrameError::BadMagic)?;
        check_header(&header)?;
        Ok(FrameReader {
            reader,
            buf: Vec::new(),
            decoder: Decoder::default(),
        })
    }

    /// The next batch, or `None` at a clean end of stream (between frames).
    pub fn next_batch(&mut self) -> Result<Option<Vec<Event>>, FrameError> {
        let mut len = [0u8; 4];
        match self.reader.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.next_batch(),
            Err(e) => return Err(e.into()),
        }
        read_exact_or(&mut self.reader, &mut len[1..], FrameError::Truncated)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::FrameTooLarge(len));
        }
        self.buf.resize(len, 0);
        read_exact_or(&mut self.reader, &mut self.buf, FrameError::Truncated)?;
        self.decoder.decode_payload(&self.buf).map(Some)
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], eof: FrameError) -> Result<(), FrameError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(eof),
        Err(e) => Err(e.into()),
    }
}

/// Writes a stream: the header once, then one frame per batch.
pub struct FrameWriter<W> {
    writer: W,
    buf: Vec<u8>,
    encoder: Encoder,
}

impl<W: Write> FrameWriter<W> {
    /// Writes the header and returns the writer.
    pub fn new(mut writer: W) -> io::Result<Self> {
        writer.write_all(&stream_header())?;
        Ok(FrameWriter {
            writer,
            buf: Vec::new(),
            encoder: Encoder::default(),
        })
    }

    /// Writes one batch as one frame.
    pub fn write_batch(&mut self, events: &[Event]) -> io::Result<()> {
        self.buf.clear();
        self.encoder.encode_frame(events, &mut self.buf);
        self.writer.write_all(&self.buf)
    }

    /// Flushes and gives back the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.writer.flush()?;
        Ok(self.writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn sample() -> Vec<Event> {
        vec![
            Event::Stack(StackDef {
                id: 0xdead_beef,
                frames: vec![0x401000, 0x7f00_0000_1234],
            }),
            Event::Alloc(Alloc {
                ts: 17_000,
                tid: 42,
                addr: 0x5555_0000,
                size: 24,
                usable_size: 24,
                stack: 0xdead_beef,
                kind: AllocKind::Calloc,
            }),
            Event::Free(Free {
                ts: 18_000,
                tid: 42,
                addr: 0x5555_0000,
                realloc: false,
            }),
            Event::End(End {
                ts: 19,
                reason: EndReason::Exit(3),
                lost_events: 0,
            }),
        ]
    }

    #[test]
    fn batches_round_trip_through_a_stream() {
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        w.write_batch(&sample()).unwrap();
        w.write_batch(&sample()[1..2]).unwrap();
        let bytes = w.into_inner().unwrap();
        let mut r = FrameReader::new(&bytes[..]).unwrap();
        assert_eq!(r.next_batch().unwrap().unwrap(), sample());
        assert_eq!(r.next_batch().unwrap().unwrap(), sample()[1..2].to_vec());
        assert!(r.next_batch().unwrap().is_none());
    }

    /// A frame built event by event reads back the same whatever room was
    /// guessed for its count: here none, then far too much.
    #[test]
    fn frames_encoded_event_by_event_round_trip_whatever_the_guess() {
        let events: Vec<Event> = (0..300u64)
            .map(|i| {
                Event::Alloc(Alloc {
                    ts: i * 1000,
                    tid: 7,
                    addr: 0x1000 + i * 16,
                    size: 16,
                    usable_size: 24,
                    stack: i % 3,
                    kind: AllocKind::Malloc,
                })
            })
            .collect();
        let mut out = stream_header().to_vec();
        let mut enc = Encoder::default();
        for expected in [0, 100_000] {
            let mut frame = enc.begin_frame(&mut out, expected);
            for e in &events {
                frame.event(e);
            }
            frame.finish();
        }
        let mut r = FrameReader::new(&out[..]).unwrap();
        assert_eq!(r.next_batch().unwrap().unwrap(), events);
        assert_eq!(r.next_batch().unwrap().unwrap(), events);
        assert!(r.next_batch().unwrap().is_none());
    }

    #[test]
    fn bad_magic_and_version_are_refused() {
        assert!(matches!(
            FrameReader::new(&b"GARBAGE!\x01\0\0\0"[..]),
            Err(FrameError::BadMagic)
        ));
        let mut h = stream_header();
        h[8] = 99;
        assert!(matches!(
            FrameReader::new(&h[..]),
            Err(FrameError::Version(99))
        ));
        assert!(matches!(
            FrameReader::new(&b"MEM"[..]),
            Err(FrameError::BadMagic)
        ));
    }

    #[test]
    fn truncated_and_corrupt_frames_are_errors_not_panics() {
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        w.write_batch(&sample()).unwrap();
        let bytes = w.into_inner().unwrap();
        for cut in HEADER_LEN + 1..bytes.len() {
            let mut r = FrameReader::new(&bytes[..cut]).unwrap();
            assert!(r.next_batch().is_err(), "cut at {cut} must fail");
        }
        let mut corrupt = bytes.clone();
        for b in corrupt[HEADER_LEN + 4..].iter_mut() {
            *b = 0xff;
        }
        assert!(FrameReader::new(&corrupt[..])
            .unwrap()
            .next_batch()
            .is_err());
        let mut huge = stream_header().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            FrameReader::new(&huge[..]).unwrap().next_batch(),
            Err(FrameError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn messages_round_trip() {
        let set = crate::LiveSet {
            blocks: vec![crate::LiveBlock {
                addr: 16,
                size: 24,
                usable: 24,
            }],
        };
        let mut out = Vec::new();
        encode_message(&set, &mut out);
        let back: crate::LiveSet = read_message(&mut &out[..]).unwrap();
        assert_eq!(back, set);
        assert!(read_message::<crate::LiveSet, _>(&mut &out[..3]).is_err());
    }

    #[test]
    fn small_events_encode_compactly() {
        let mut enc = Encoder::default();
        let mut out = Vec::new();
        enc.encode_frame(&sample()[..2], &mut out);
        let before = out.len();
        enc.encode_frame(&sample()[2..3], &mut out);
        // length prefix + vec length + tag + three one-byte deltas
        assert_eq!(out.len() - before, 9, "a free right after its alloc");
    }
}

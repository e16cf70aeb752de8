//! bincode 2's varints, written and read by hand for the hot path.
//!
//! A frame is bincode 2 with the standard config, and every allocation and
//! free in it is a handful of varints. Through bincode's generic serde path
//! (a `Vec` of a serde enum) a batch cost 22 ns per event to encode, in the
//! shim's sender thread, and 34 ns per event to decode, in the collector;
//! coded directly here it is 7 and 11 ns (measured on a 4 M event trace of
//! `malloc`/`free` pairs). That matters when the program, the sender and the
//! collector share two cores. bincode does not expose its varint coding, so
//! the compact events are coded here, byte for byte as bincode codes them;
//! every other event still goes through bincode.
//!
//! The layout of an unsigned integer: a value up to 250 is one byte; larger
//! values are a marker byte (251, 252 or 253) then the value as a
//! little-endian `u16`, `u32` or `u64`. A signed integer is zigzag-coded
//! (0, -1, 1, -2, … become 0, 1, 2, 3, …) then written as unsigned. Like
//! bincode, the reader accepts a value written wider than needed, and refuses
//! a marker too wide for the type being read.

use std::fmt;

/// Largest value that takes a single byte.
const SINGLE_BYTE_MAX: u8 = 250;
/// Marker of a value that follows as a little-endian `u16`.
const U16_MARKER: u8 = 251;
/// Marker of a value that follows as a little-endian `u32`.
const U32_MARKER: u8 = 252;
/// Marker of a value that follows as a little-endian `u64`.
const U64_MARKER: u8 = 253;

/// Appends `v` as an unsigned varint.
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    if v <= u64::from(SINGLE_BYTE_MAX) {
        out.push(v as u8);
    } else {
        put_wide(out, v);
    }
}

/// Appends a value over [`SINGLE_BYTE_MAX`], kept out of line so that the one-byte case inlines small.
#[inline(never)]
fn put_wide(out: &mut Vec<u8>, v: u64) {
    let (bytes, len) = wide(v);
    out.extend_from_slice(&bytes[..len]);
}

/// A value over [`SINGLE_BYTE_MAX`] as marker and little-endian bytes, and how many of them count.
#[inline]
fn wide(v: u64) -> ([u8; 9], usize) {
    let mut bytes = [0u8; 9];
    let len = if v <= u64::from(u16::MAX) {
        bytes[0] = U16_MARKER;
        3
    } else if v <= u64::from(u32::MAX) {
        bytes[0] = U32_MARKER;
        5
    } else {
        bytes[0] = U64_MARKER;
        9
    };
    bytes[1..].copy_from_slice(&v.to_le_bytes());
    (bytes, len)
}

/// Appends `v` as a signed (zigzag) varint.
#[inline]
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, zigzag(v));
}

/// `v` as an unsigned varint, in a fixed buffer: the bytes and how many of them count.
pub(crate) fn encode_u64(v: u64) -> ([u8; 9], usize) {
    if v <= u64::from(SINGLE_BYTE_MAX) {
        let mut bytes = [0u8; 9];
        bytes[0] = v as u8;
        (bytes, 1)
    } else {
        wide(v)
    }
}

/// Number of bytes `v` takes as an unsigned varint.
pub(crate) fn len_u64(v: u64) -> usize {
    encode_u64(v).1
}

/// Maps signed to unsigned so that small magnitudes stay small: 0, -1, 1, -2 → 0, 1, 2, 3.
#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Why bytes could not be read as a varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended inside the value.
    Truncated,
    /// A first byte that is no valid marker for the type being read.
    BadMarker(u8),
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarintError::Truncated => write!(f, "the batch ends inside a value"),
            VarintError::BadMarker(b) => write!(f, "invalid integer marker byte {b}"),
        }
    }
}

/// A cursor over a byte slice that reads varints.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// Skips `n` bytes, which the caller has consumed from [`Reader::rest`].
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.bytes.len() - self.pos);
        self.pos += n;
    }

    /// Reads an unsigned varint of at most 64 bits.
    #[inline]
    pub(crate) fn u64(&mut self) -> Result<u64, VarintError> {
        let rest = self.rest();
        if let Some(&b) = rest.first() {
            if b <= SINGLE_BYTE_MAX {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        // Wide values are common too (addresses), so they get a fast path:
        // one 8-byte load, cut to the width the marker gives.
        if let Some(&[marker, b1, b2, b3, b4, b5, b6, b7, b8]) = rest.get(..9) {
            let word = u64::from_le_bytes([b1, b2, b3, b4, b5, b6, b7, b8]);
            let (v, len) = match marker {
                U16_MARKER => (word & 0xffff, 3),
                U32_MARKER => (word & 0xffff_ffff, 5),
                U64_MARKER => (word, 9),
                _ => return Err(VarintError::BadMarker(marker)),
            };
            self.pos += len;
            return Ok(v);
        }
        self.wide(U64_MARKER)
    }

    /// Reads an unsigned varint of at most 32 bits.
    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, VarintError> {
        match self.bytes.get(self.pos) {
            Some(&b) if b <= SINGLE_BYTE_MAX => {
                self.pos += 1;
                Ok(u32::from(b))
            }
            _ => self.wide(U32_MARKER).map(|v| v as u32),
        }
    }

    /// Reads a signed (zigzag) varint of at most 64 bits.
    #[inline]
    pub(crate) fn i64(&mut self) -> Result<i64, VarintError> {
        self.u64().map(unzigzag)
    }

    /// Reads a value that does not fit in one byte, with a marker up to
    /// `widest`: the slow path, for every wide `u32` (rare: tags and stack
    /// indices) and for wide `u64`s in the last 8 bytes of the input.
    #[cold]
    #[inline(never)]
    fn wide(&mut self, widest: u8) -> Result<u64, VarintError> {
        let rest = self.rest();
        let &marker = rest.first().ok_or(VarintError::Truncated)?;
        let len = match marker {
            U16_MARKER => 2,
            U32_MARKER => 4,
            U64_MARKER => 8,
            _ => return Err(VarintError::BadMarker(marker)),
        };
        if marker > widest {
            return Err(VarintError::BadMarker(marker));
        }
        let body = rest.get(1..1 + len).ok_or(VarintError::Truncated)?;
        let mut le = [0u8; 8];
        le[..len].copy_from_slice(body);
        self.pos += 1 + len;
        Ok(u64::from_le_bytes(le))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bincode_bytes<T: serde::Serialize>(v: T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn bincode_read<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<(T, usize)> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).ok()
    }

    /// Values at and around every width boundary, and the extremes.
    fn interesting_u64() -> Vec<u64> {
        let mut v = vec![0, 1, 2, 127, 128, 255, 256, u64::MAX];
        for edge in [250u64, 1 << 16, 1 << 32] {
            v.extend([edge - 2, edge - 1, edge, edge + 1, edge + 2]);
        }
        v.extend((0..64).map(|s| 1u64 << s));
        v.extend((0..64).map(|s| (1u64 << s).wrapping_sub(1)));
        v
    }

    fn interesting_i64() -> Vec<i64> {
        let mut v: Vec<i64> = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1];
        for u in interesting_u64() {
            let s = u as i64;
            v.extend([s, s.wrapping_neg(), (u >> 1) as i64, -((u >> 1) as i64)]);
        }
        v
    }

    #[test]
    fn unsigned_bytes_are_bincodes() {
        for v in interesting_u64() {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            assert_eq!(out, bincode_bytes(v), "{v}");
            let (fixed, len) = encode_u64(v);
            assert_eq!(&fixed[..len], &out[..], "{v}");
            assert_eq!(len_u64(v), out.len(), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.u64(), Ok(v));
            assert!(r.rest().is_empty());
            if let Ok(v32) = u32::try_from(v) {
                assert_eq!(out, bincode_bytes(v32), "{v}");
                assert_eq!(Reader::new(&out).u32(), Ok(v32));
            }
        }
    }

    #[test]
    fn signed_bytes_are_bincodes() {
        for v in interesting_i64() {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            assert_eq!(out, bincode_bytes(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.i64(), Ok(v));
            assert!(r.rest().is_empty());
        }
    }

    /// Every first byte, followed by every length of a few patterns: the
    /// reader accepts exactly what bincode accepts (wide forms of small
    /// values included), with the same value and length.
    #[test]
    fn reading_agrees_with_bincode_on_any_bytes() {
        for first in 0..=255u8 {
            for fill in [0x00u8, 0x01, 0x7f, 0xfa, 0xff] {
                for len in 0..=10 {
                    let mut bytes = vec![fill; len];
                    if let Some(b) = bytes.first_mut() {
                        *b = first;
                    }
                    let mut r = Reader::new(&bytes);
                    let ours = r.u64().ok().map(|v| (v, bytes.len() - r.rest().len()));
                    assert_eq!(ours, bincode_read::<u64>(&bytes), "u64 {bytes:?}");
                    let mut r = Reader::new(&bytes);
                    let ours = r.u32().ok().map(|v| (v, bytes.len() - r.rest().len()));
                    assert_eq!(ours, bincode_read::<u32>(&bytes), "u32 {bytes:?}");
                    let mut r = Reader::new(&bytes);
                    let ours = r.i64().ok().map(|v| (v, bytes.len() - r.rest().len()));
                    assert_eq!(ours, bincode_read::<i64>(&bytes), "i64 {bytes:?}");
                }
            }
        }
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(Reader::new(&[]).u64(), Err(VarintError::Truncated));
        assert_eq!(Reader::new(&[252, 1, 2]).u64(), Err(VarintError::Truncated));
        assert_eq!(Reader::new(&[254]).u64(), Err(VarintError::BadMarker(254)));
        assert_eq!(
            Reader::new(&[253, 0, 0, 0, 0, 0, 0, 0, 0]).u32(),
            Err(VarintError::BadMarker(253))
        );
    }
}

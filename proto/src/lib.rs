//! The wire and trace-file format shared by memshim's shim and collector.
//!
//! * [`event`]: what a profiled process says (allocations, frees, stacks, modules).
//! * [`framing`]: how it is said (a versioned header, then length-prefixed
//!   bincode batches), identical on the socket and in trace files.
//! * [`python`]: Python frames carried inside native stacks.
//! * [`paths`]: the environment variables and default socket location both
//!   sides agree on.
//!
//! Both sides depend on this crate, so a change here is a protocol change:
//! bump [`framing::PROTOCOL_VERSION`] for anything a reader of the previous
//! version could not decode.

pub mod event;
pub mod framing;
pub mod paths;
pub mod python;
mod varint;
pub mod wire;

pub use event::*;
pub use framing::{FrameError, FrameReader, FrameWriter, PROTOCOL_VERSION, STREAM_MAGIC};
pub use python::{PythonCode, PythonFrame};
pub use wire::{Decoder, Encoder};

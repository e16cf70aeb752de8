//! Per-process state rebuilt from an event stream.
//!
//! * [`session`]: one process image: counters, lifecycle, events applied in order.
//! * [`heap`]: the live set, the allocation sites and the process peak.
//! * [`mmaps`]: mapped ranges.
//! * [`modules`]: loaded objects, to map addresses back to files.
//! * [`histogram`], [`timeline`]: bounded summaries over time and size.

pub mod heap;
pub mod histogram;
pub mod mmaps;
pub mod modules;
pub mod session;
pub mod timeline;

#[cfg(test)]
pub(crate) mod tests;

pub use heap::{Heap, LiveBlock, Site};
pub use session::{Counters, Exit, ForkSnapshot, ProtocolError, Session};

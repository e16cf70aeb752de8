//! Per-process state rebuilt from an event stream.
//!
//! * [`session`]: one process image: counters, lifecycle, events applied in order.
//! * [`heap`]: the live set, the allocation sites and the process peak.
//! * [`sites`]: the allocation sites, numbered densely.
//! * [`summary`]: the process's size and lifetime distributions, from the sites'.
//! * [`latest`]: each thread's latest allocation, to tell temporary blocks.
//! * [`leaks`]: leak classes of the blocks live at exit, from the shim's scan.
//! * [`live`]: the live blocks by address, packed and sharded for memory.
//! * [`sampling`]: unbiased estimates, with uncertainty, from a sampled stream.
//! * [`mmaps`]: mapped ranges.
//! * [`modules`]: loaded objects, to map addresses back to files.
//! * [`histogram`], [`distribution`] (over [`buckets`]), [`timeline`], [`rate`],
//!   [`series`]: bounded summaries over size and time (percentiles, allocation rate,
//!   per-site live bytes).

pub mod buckets;
pub mod distribution;
pub mod heap;
pub mod histogram;
pub mod latest;
pub mod leaks;
pub mod live;
pub mod mmaps;
pub mod modules;
pub mod rate;
pub mod sampling;
pub mod series;
pub mod session;
pub mod sites;
pub mod summary;
pub mod timeline;

#[cfg(test)]
mod analysis_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use heap::{Heap, Site};
pub use live::{LiveBlock, LiveBlocks};
pub use session::{Counters, Exit, ForkSnapshot, ProtocolError, Session};

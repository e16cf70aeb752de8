//! The analysis engine: what the rebuilt state means.
//!
//! * [`growth`]: trends of per-site live bytes; leak / linear / spike classes.
//! * [`recommend`]: rules that turn the figures into suggested changes.
//! * [`attribution`]: which frame and module a site belongs to.
//! * [`categories`]: user categories from a pattern file.
//! * [`grouping`]: sites summed by function, source file or module (`--group`).
//! * [`diff`]: per-site growth between two reports (snapshots).
//! * [`snapshots`]: named reports kept by a serving collector.

pub mod attribution;
pub mod categories;
pub mod diff;
pub mod grouping;
pub mod growth;
pub mod recommend;
pub mod snapshots;

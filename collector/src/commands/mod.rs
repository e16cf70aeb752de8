//! The subcommands of `memcollect`.

pub mod diff;
pub mod output;
pub mod report;
pub mod serve;
pub mod snapshot;

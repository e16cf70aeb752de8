//! The subcommands of `memcollect`.

pub mod output;
pub mod report;
pub mod serve;

//! memcollect: receives memshim event streams, rebuilds each process's heap,
//! symbolizes the interesting stacks and reports.
//!
//! * [`analysis`]: growth, recommendations, attribution, categories, diffs, snapshots.
//! * [`state`]: per-process state rebuilt from events.
//! * [`registry`]: all sessions; fork hand-over; exec detection.
//! * [`ingest`], [`tee`]: reading (and saving) a stream.
//! * [`server`], [`control`]: the socket and its report requests.
//! * [`symbolize`], [`elf`]: addresses to functions and lines; ELF checks.
//! * [`report`]: the report model, its building and its text form.
//! * [`cli`], [`commands`], [`run`], [`failure`]: the `memcollect` command.

pub mod analysis;
pub mod cli;
pub mod commands;
pub mod control;
pub mod elf;
pub mod failure;
pub mod ingest;
pub mod leakcheck;
pub mod registry;
pub mod report;
pub mod run;
pub mod server;
pub mod state;
pub mod symbolize;
pub mod tee;

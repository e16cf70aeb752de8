//! Command-line interface of `memcollect`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// memcollect: the memshim heap profiler's collector.
///
/// Profiles dynamically linked programs through LD_PRELOAD (no recompilation),
/// collects their event streams, symbolizes and reports.
#[derive(Debug, Parser)]
#[command(name = "memcollect", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command with the shim preloaded and report when its whole process tree has ended.
    ///
    /// The report goes to --output, else to stderr: stdout stays the command's.
    /// The exit code is the command's (128+N if it was killed by signal N).
    Run(RunArgs),
    /// Run a long-lived collector that accepts any number of profiled processes.
    Serve(ServeArgs),
    /// Print a report from the running collector, or from saved trace files.
    Report(ReportArgs),
    /// Record the live state of the running processes under NAME, in the serving collector.
    ///
    /// Kept in the collector's memory and, with `serve --data-dir DIR`, as DIR/snapshot-NAME.json.
    Snapshot(SnapshotArgs),
    /// Show per-site growth between two snapshots (names) or two saved JSON reports (files).
    Diff(DiffArgs),
}

/// Report output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// The JSON report (see DESIGN.md).
    Json,
}

/// Options shared by the commands that print a report.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Number of allocation sites listed per ranking.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report to FILE instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sum memory by user categories from FILE (lines like `Cache = function:lru_* | module:libcache.so`).
    #[arg(long, value_name = "FILE")]
    pub categories: Option<PathBuf>,
}

/// `memcollect snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Name of the snapshot (letters, digits, '.', '_', '-').
    pub name: String,
    /// Only the processes with this pid.
    #[arg(long, value_name = "P")]
    pub pid: Option<u32>,
    /// Socket of the running collector [default: as for `serve`].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `memcollect diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First snapshot name, or JSON report file.
    pub a: String,
    /// Second snapshot name, or JSON report file.
    pub b: String,
    /// Sites listed per process.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the diff to FILE instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Socket of the running collector, for snapshot names [default: as for `serve`].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `memcollect run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Report options.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Mean bytes between recorded allocations (0 records every call).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sample_bytes: u64,
    /// Path of libmemshim.so [default: $MEMSHIM_LIB, else next to memcollect, else ../lib/].
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
    /// The command to profile, and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `memcollect serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Socket to listen on [default: $MEMSHIM_SOCKET, else $XDG_RUNTIME_DIR/memshim/collector.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also save each raw stream as DIR/<pid>-<unix_ms>.mst, for `memcollect report FILE`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `memcollect report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report options.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only the processes with this pid.
    #[arg(long, value_name = "P")]
    pub pid: Option<u32>,
    /// Socket of the running collector [default: as for `serve`].
    #[arg(long, value_name = "PATH", conflicts_with = "traces")]
    pub socket: Option<PathBuf>,
    /// Trace files (.mst) to report offline instead of asking the collector.
    #[arg(value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
}

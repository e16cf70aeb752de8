//! Command-line interface of `memcollect`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::leakcheck::gates::{parse_size, LeakLevel};

/// memcollect: the memshim heap profiler's collector.
///
/// Profiles dynamically linked programs through LD_PRELOAD (no recompilation),
/// collects their event streams, symbolizes and reports.
#[derive(Debug, Parser)]
#[command(
    name = "memcollect",
    version,
    propagate_version = true,
    after_long_help = "Environment: MEMSHIM_SYMBOL_CACHE=DIR keeps what was symbolized from \
debug information, per build-id, for later runs (default $XDG_CACHE_HOME/memshim/symbols, \
else ~/.cache/memshim/symbols; `off` turns it off)."
)]
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
    /// The exit code is the command's (128+N if it was killed by signal N),
    /// unless a gate (--fail-on-leak, --max-leak, --max-peak, ...) fails: then
    /// it is 99, and a GATE FAILED block on stderr names the processes, the
    /// sites and by how much. Exit code 2: bad options or suppressions file.
    Run(RunArgs),
    /// Run a long-lived collector that accepts any number of profiled processes.
    Serve(ServeArgs),
    /// Print a report from the running collector, or from saved trace files.
    ///
    /// Exit code 0, or 99 when a gate (--fail-on-leak, --max-peak, ...) fails.
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
    /// Also sum every site by the function, source file or module it is
    /// attributed to (its first frame outside the C/C++ runtime and the
    /// allocation wrappers: malloc, operator new, strdup, libc, libstdc++...),
    /// so that an allocation reached by many paths adds up; the --top largest
    /// groups are listed (JSON: `group_by`, `groups`).
    #[arg(long, value_enum, value_name = "BY")]
    pub group: Option<crate::analysis::grouping::GroupBy>,
}

/// Leak checking and gates, shared by `run` and `report`.
#[derive(Debug, Args, Default)]
pub struct LeakArgs {
    /// Leak suppressions from FILE (repeatable). One per line:
    /// `NAME = leak:KINDS | function:GLOB | module:GLOB | stack:FRAME;FRAME...`,
    /// KINDS among definitely,indirectly,possibly,reachable (default: the first
    /// three); FRAME is `FUNCTION_GLOB [MODULE_GLOB]` or `...`; all matchers of a
    /// line must match. Suppressed blocks are counted as `suppressed` instead.
    #[arg(long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Do not apply the built-in suppressions (what glibc's loader and
    /// threads, CPython and Node leave at exit on purpose).
    #[arg(long)]
    pub no_default_suppressions: bool,
    /// Print a ready-to-paste suppression for every site that still leaks
    /// (after the report; to FILE with --gen-suppressions=FILE).
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub gen_suppressions: Option<PathBuf>,
    /// Fail (exit 99) when a process leaves lost memory at LEVEL:
    /// definitely (default; definitely + indirectly lost), possibly (adds
    /// possibly lost) or reachable (any block live at exit).
    #[arg(long, value_name = "LEVEL", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "definitely")]
    pub fail_on_leak: Option<LeakLevel>,
    /// Fail (exit 99) when a process loses more than SIZE bytes at the leak
    /// level (that of --fail-on-leak, else definitely). SIZE: 4096, 512k, 10MiB, 1G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_leak: Option<u64>,
    /// Fail (exit 99) when a process's heap peak exceeds SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_peak: Option<u64>,
    /// Fail (exit 99) when the processes' lost bytes add up to more than SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_leak_total: Option<u64>,
    /// Fail (exit 99) when the processes' heap peaks add up to more than SIZE
    /// (an upper bound of the tree's simultaneous peak).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_peak_total: Option<u64>,
    /// Write a JUnit XML report to FILE: one test case per process (named by
    /// its command line, classname memshim), failed when it fails a gate.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Only report and gate the processes whose command line or executable
    /// matches PATTERN: a glob with `*`/`?` (matching the whole command line,
    /// the executable's path or its file name), else a substring of the command
    /// line or the executable's path. Repeatable (any may match).
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Give every process a full section in the text report (by default,
    /// short-lived helpers, such as shells, `sed` or images replaced by exec,
    /// that leak nothing and peak under 256 KiB, share one line).
    #[arg(long)]
    pub show_helpers: bool,
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
    /// Do not set what makes interpreters visible. By default, unless already
    /// set, the command's whole process tree gets PYTHONMALLOC=malloc (CPython
    /// then allocates each object with malloc, so that Python objects are
    /// seen) and --perf-basic-prof --interpreted-frames-native-stack appended
    /// to NODE_OPTIONS (Node then writes /tmp/perf-PID.map, so that JavaScript
    /// functions are named); one stderr
    /// line says so when a Python or Node process is involved.
    #[arg(long)]
    pub no_interpreter_env: bool,
    /// Leak checking and gates.
    #[command(flatten)]
    pub leaks: LeakArgs,
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
    /// Leak checking and gates.
    #[command(flatten)]
    pub leaks: LeakArgs,
    /// Socket of the running collector [default: as for `serve`].
    #[arg(long, value_name = "PATH", conflicts_with = "traces")]
    pub socket: Option<PathBuf>,
    /// Trace files (.mst) to report offline instead of asking the collector.
    #[arg(value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
}

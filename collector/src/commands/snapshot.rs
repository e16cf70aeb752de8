//! `memcollect snapshot NAME`: record the live state in the serving collector.

use memshim_proto::paths::socket_path;

use crate::analysis::snapshots::{validate_name, SNAPSHOT_SITES};
use crate::cli::SnapshotArgs;
use crate::control::{query, Action, Request};
use crate::failure::Failure;
use crate::report::units::size;

/// Asks the collector to keep a snapshot; prints one line per process.
pub fn snapshot(args: SnapshotArgs) -> Result<i32, Failure> {
    validate_name(&args.name)?;
    let socket = args.socket.unwrap_or_else(socket_path);
    let report = query(
        &socket,
        &Request {
            action: Action::Snapshot(args.name.clone()),
            ..Request::report(SNAPSHOT_SITES, args.pid)
        },
    )?;
    println!(
        "snapshot {}: {} process image(s)",
        args.name,
        report.processes.len()
    );
    for p in &report.processes {
        println!(
            "  pid {}  {}  live {} in {} blocks, {} sites",
            p.pid,
            p.command,
            size(p.totals.live_bytes),
            p.totals.live_blocks,
            p.site_count
        );
    }
    Ok(0)
}

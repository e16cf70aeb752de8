//! `memcollect diff A B`: per-site growth between two snapshots or two saved reports.

use std::path::Path;

use memshim_proto::paths::socket_path;

use crate::analysis::diff::{diff as compare, render_text};
use crate::cli::{DiffArgs, Format};
use crate::control::{query, Action, Request};
use crate::failure::Failure;
use crate::report::Report;

/// A report from a JSON file (when `what` names a file) or the collector's snapshot `what`.
fn load(what: &str, socket: &Path) -> Result<Report, Failure> {
    let path = Path::new(what);
    if path.is_file() {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))?;
        return serde_json::from_slice(&text)
            .map_err(|e| Failure::new(format!("{what} is not a memcollect JSON report: {e}")));
    }
    let report = query(
        socket,
        &Request {
            action: Action::GetSnapshot(what.to_owned()),
            ..Request::default()
        },
    )?;
    Ok(report)
}

/// Prints the diff.
pub fn diff(args: DiffArgs) -> Result<i32, Failure> {
    let socket = args.socket.clone().unwrap_or_else(socket_path);
    let a = load(&args.a, &socket)?;
    let b = load(&args.b, &socket)?;
    let d = compare(&args.a, &a, &args.b, &b, args.top);
    let text = match args.format {
        Format::Text => render_text(&d),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&d)
                .map_err(|e| format!("cannot encode the diff: {e}"))?;
            s.push('\n');
            s
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())
            .map_err(|e| format!("cannot write the diff: {e}"))?,
    }
    Ok(0)
}

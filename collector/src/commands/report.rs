//! `memcollect report`: from the running collector or from trace files.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use memshim_proto::paths::socket_path;

use crate::analysis::categories::Categories;
use crate::cli::ReportArgs;
use crate::commands::output::{emit, Terminal};
use crate::control::{query, Request};
use crate::failure::Failure;
use crate::ingest::{ingest, IngestError};
use crate::registry::Registry;
use crate::report::build::{build_report, ReportOptions};
use crate::report::Report;
use crate::symbolize::SymbolCache;

/// Prints the report asked for.
pub fn report(args: ReportArgs) -> Result<i32, Failure> {
    let categories = args
        .output
        .categories
        .as_deref()
        .map(Categories::load)
        .transpose()?;
    let suppressions = crate::leakcheck::load_suppressions(&args.leaks)?;
    let mut report = if args.traces.is_empty() {
        let socket = args.socket.unwrap_or_else(socket_path);
        query(
            &socket,
            &Request {
                categories,
                suppressions: suppressions.as_deref().cloned(),
                group: args.output.group,
                ..Request::report(args.output.top, args.pid)
            },
        )?
    } else {
        offline(
            &args.traces,
            &ReportOptions {
                top: args.output.top,
                pid: args.pid,
                categories: categories.map(Arc::new),
                suppressions,
                group: args.output.group,
            },
        )?
    };
    crate::leakcheck::select::only(&mut report, &args.leaks.only);
    emit(
        &report,
        args.output.format,
        args.output.output.as_deref(),
        Terminal::Stdout,
        args.leaks.show_helpers,
    )?;
    let failed = crate::leakcheck::conclude(&report, &args.leaks, Terminal::Stdout)?;
    Ok(failed.unwrap_or(0))
}

/// Builds a report from trace files, read in parallel (a forked child's
/// trace waits for its parent's, as on the socket), their modules' files
/// parsed meanwhile.
pub fn offline(traces: &[PathBuf], options: &ReportOptions) -> Result<Report, Failure> {
    let registry = Registry::default();
    let symbols = Arc::new(SymbolCache::persistent());
    let results: Vec<(PathBuf, Result<(), String>)> = thread::scope(|scope| {
        let workers: Vec<_> = traces
            .iter()
            .map(|path| {
                let (registry, symbols) = (&registry, &symbols);
                scope.spawn(move || (path.clone(), read_trace(registry, symbols, path)))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| (PathBuf::new(), Err("internal error".into())))
            })
            .collect()
    });
    for (path, result) in results {
        if let Err(e) = result {
            return Err(Failure::new(format!("{}: {e}", path.display())));
        }
    }
    let report = build_report(&registry, &symbols, options);
    // Every process's sites, blocks and stacks go with the process, which
    // ends once the report is out: freeing them one by one first took
    // milliseconds (a report on `gcc -c`'s three traces: 34 -> 29 ms, best
    // of 21).
    std::mem::forget(registry);
    Ok(report)
}

/// Reads one trace; a trace cut short is reported with a warning, an unreadable one is an error.
fn read_trace(
    registry: &Registry,
    symbols: &Arc<SymbolCache>,
    path: &PathBuf,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    match ingest(registry, file, None, None, Some(symbols)) {
        Ok(_) => Ok(()),
        Err(failure) => match (failure.pid, &failure.error) {
            (Some(pid), IngestError::Frame(e)) => {
                eprintln!(
                    "memcollect: {}: {e}; reporting pid {pid} as far as it was read",
                    path.display()
                );
                Ok(())
            }
            _ => Err(failure.error.to_string()),
        },
    }
}

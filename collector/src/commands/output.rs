//! Writing a report where the user asked.

use std::io::Write;
use std::path::Path;

use crate::cli::Format;
use crate::failure::Failure;
use crate::report::{text, Report};

/// Where a report goes when no `--output` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Standard output (`report`).
    Stdout,
    /// Standard error (`run`: stdout belongs to the profiled command).
    Stderr,
}

/// Renders `report` in `format` (text: short-lived helpers folded into one
/// line unless `show_helpers`).
pub fn render(report: &Report, format: Format, show_helpers: bool) -> Result<String, Failure> {
    match format {
        Format::Text => Ok(text::render_with(report, !show_helpers)),
        Format::Json => serde_json::to_string_pretty(report)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Failure::new(format!("cannot encode the report: {e}"))),
    }
}

/// Writes `report` to `output`, or to `terminal`.
pub fn emit(
    report: &Report,
    format: Format,
    output: Option<&Path>,
    terminal: Terminal,
    show_helpers: bool,
) -> Result<(), Failure> {
    let text = render(report, format, show_helpers)?;
    let written = match output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("cannot write the report to {}: {e}", path.display())),
        None => match terminal {
            Terminal::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Terminal::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        }
        .map_err(|e| format!("cannot write the report: {e}")),
    };
    written.map_err(Failure::new)
}

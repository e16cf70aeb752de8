//! The control protocol: asking a running collector for a report.
//!
//! ```text
//! request := CONTROL_MAGIC (8 bytes) version (u32 LE) message
//! reply   := message
//! message := length (u32 LE) JSON
//! ```
//!
//! The request's JSON is a [`Request`]; the reply's is a [`Reply`]. The
//! server tells a control connection from an event stream by the first eight
//! bytes.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::analysis::categories::Categories;
use crate::analysis::snapshots::{SnapshotStore, SNAPSHOT_SITES};
use crate::leakcheck::suppressions::Suppressions;
use crate::registry::Registry;
use crate::report::build::{build_report, ReportOptions};
use crate::report::Report;
use crate::symbolize::SymbolCache;

/// The first eight bytes of a control connection.
pub const CONTROL_MAGIC: [u8; 8] = *b"MEMSHIMC";
/// Version of the control protocol.
pub const CONTROL_VERSION: u32 = 1;
/// Largest request the server reads.
const MAX_REQUEST: usize = 64 << 10;
/// Largest reply the client reads.
const MAX_REPLY: usize = 1 << 30;

/// What a client asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Sites per list.
    pub top: usize,
    /// Only this pid's images.
    pub pid: Option<u32>,
    /// User categories to sum the sites by.
    #[serde(default)]
    pub categories: Option<Categories>,
    /// Leak suppressions to apply (the client's files and, unless disabled, the default set).
    #[serde(default)]
    pub suppressions: Option<Suppressions>,
    /// What to do (a report by default).
    #[serde(default)]
    pub action: Action,
    /// Sum the sites by function, file or module (`--group`).
    #[serde(default)]
    pub group: Option<crate::analysis::grouping::GroupBy>,
}

/// What a request asks the collector to do; every action replies with a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Report on the processes now.
    #[default]
    Report,
    /// Record the live state now under this name (and reply with it).
    Snapshot(String),
    /// Reply with the snapshot of this name.
    GetSnapshot(String),
}

impl Request {
    /// A plain report request.
    pub fn report(top: usize, pid: Option<u32>) -> Self {
        Request {
            top,
            pid,
            ..Request::default()
        }
    }
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The report asked for.
    Report(Report),
    /// Why there is no report.
    Error(String),
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Writes one length-prefixed JSON message.
pub fn write_message<W: Write, T: Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(|e| invalid(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| invalid("message too large".into()))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Reads one length-prefixed JSON message of at most `max` bytes.
pub fn read_message<R: Read, T: DeserializeOwned>(r: &mut R, max: usize) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!(
            "message of {len} bytes exceeds the {max}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("malformed message: {e}")))
}

/// Serves one control connection whose magic bytes were already read.
pub fn serve<S: Read + Write>(
    stream: &mut S,
    registry: &Registry,
    cache: &SymbolCache,
    snapshots: &SnapshotStore,
) -> io::Result<()> {
    let mut version = [0u8; 4];
    stream.read_exact(&mut version)?;
    let version = u32::from_le_bytes(version);
    if version != CONTROL_VERSION {
        let msg = format!("control protocol version {version} is not supported (this collector speaks {CONTROL_VERSION})");
        write_message(stream, &Reply::Error(msg.clone()))?;
        return Err(invalid(msg));
    }
    let request: Request = read_message(stream, MAX_REQUEST)?;
    let mut options = ReportOptions {
        top: request.top,
        pid: request.pid,
        categories: request.categories.map(Arc::new),
        suppressions: request.suppressions.map(Arc::new),
        group: request.group,
    };
    let reply = match request.action {
        Action::Report => Reply::Report(build_report(registry, cache, &options)),
        Action::Snapshot(name) => {
            options.top = options.top.max(SNAPSHOT_SITES);
            let report = build_report(registry, cache, &options);
            match snapshots.save(&name, &report) {
                Ok(()) => Reply::Report(report),
                Err(e) => Reply::Error(e),
            }
        }
        Action::GetSnapshot(name) => match snapshots.get(&name) {
            Ok(report) => Reply::Report(report),
            Err(e) => Reply::Error(e),
        },
    };
    write_message(stream, &reply)
}

/// Asks the collector listening on `socket` for a report.
pub fn query(socket: &Path, request: &Request) -> Result<Report, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "no collector is listening on {} ({e}); start one with `memcollect serve`",
            socket.display()
        )
    })?;
    let talk = |stream: &mut UnixStream| -> io::Result<Reply> {
        stream.write_all(&CONTROL_MAGIC)?;
        stream.write_all(&CONTROL_VERSION.to_le_bytes())?;
        write_message(stream, request)?;
        read_message(stream, MAX_REPLY)
    };
    match talk(&mut stream) {
        Ok(Reply::Report(report)) => Ok(report),
        Ok(Reply::Error(e)) => Err(format!("the collector refused: {e}")),
        Err(e) => Err(format!(
            "cannot talk to the collector on {}: {e}",
            socket.display()
        )),
    }
}

//! Reading one event stream into the registry.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use memshim_proto::framing::encode_message;
use memshim_proto::{Event, FrameError, FrameReader, Hello};

use crate::registry::{Registry, SessionHandle};
use crate::state::{ProtocolError, Session};
use crate::symbolize::SymbolCache;
use crate::tee::{TeeReader, TeeSink};

/// Why a stream could not be read to its end.
#[derive(Debug)]
pub enum IngestError {
    /// Bad header, corrupt or truncated frame, read error.
    Frame(FrameError),
    /// The stream's first event is not a `Hello`.
    NoHello,
    /// The events decode but make no sense.
    Protocol(ProtocolError),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Frame(e) => e.fmt(f),
            IngestError::NoHello => {
                write!(f, "protocol error: the stream does not start with Hello")
            }
            IngestError::Protocol(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for IngestError {}

/// A stream that stopped early; its session, if it had one, is kept as cut.
#[derive(Debug)]
pub struct IngestFailure {
    /// The pid of the stream, once its `Hello` was read.
    pub pid: Option<u32>,
    /// What went wrong.
    pub error: IngestError,
}

impl std::fmt::Display for IngestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "stream of pid {pid}: {}", self.error),
            None => write!(f, "stream: {}", self.error),
        }
    }
}

impl std::error::Error for IngestFailure {}

/// Where to save a copy of the raw stream.
#[derive(Debug, Clone, Copy)]
pub struct SaveTo<'a> {
    /// The directory for `<pid>-<unix_ms>.mst` files.
    pub dir: &'a Path,
}

/// Reads a whole stream (header included) into `registry`.
///
/// Returns the session it fed. On error the session keeps what it had and is
/// closed as cut.
/// `replies`, when the stream comes from a live process, carries answers back
/// to it (the live set for its exit scan); a saved trace has none.
/// `symbols`, if given, starts parsing each announced module's file in the
/// background ([`SymbolCache::warm`]).
pub fn ingest<R: Read>(
    registry: &Registry,
    reader: R,
    save: Option<SaveTo<'_>>,
    replies: Option<Box<dyn Write>>,
    symbols: Option<&Arc<SymbolCache>>,
) -> Result<Arc<SessionHandle>, IngestFailure> {
    let (reader, tee) = TeeReader::new(reader);
    if save.is_none() {
        tee.disable();
    }
    let fail = |pid, error| IngestFailure { pid, error };
    let mut frames = FrameReader::new(BufReader::with_capacity(1 << 16, reader))
        .map_err(|e| fail(None, IngestError::Frame(e)))?;
    let (hello, rest) = first_hello(&mut frames).map_err(|e| fail(None, e))?;
    let pid = hello.pid;
    if let Some(save) = save {
        let unix_ms = hello.start_unix_ns / 1_000_000;
        if let Err(e) = tee.open(save.dir, pid, unix_ms) {
            eprintln!(
                "memcollect: cannot save the stream of pid {pid} in {}: {e}",
                save.dir.display()
            );
        }
    }
    let handle = registry.open(hello);
    let mut sink = Sink {
        registry,
        handle: &handle,
        replies,
        symbols,
    };
    let result = sink.apply_all(rest, &mut frames);
    registry.close(&handle);
    finish_tee(&tee, pid);
    result.map(|()| handle).map_err(|e| fail(Some(pid), e))
}

/// Empties a batch that was applied in full without dropping its events
/// one by one: allocations, frees and the empty `Lost` that
/// [`crate::state::Session::apply_in_place`] leaves of everything else own
/// nothing, and checking each for something to drop was 6 % of all the
/// instructions ingestion ran (callgrind, on a 2 M-pair trace).
fn forget_applied(batch: &mut Vec<Event>) {
    debug_assert!(batch
        .iter()
        .all(|e| matches!(e, Event::Alloc(_) | Event::Free(_) | Event::Lost { .. })));
    // SAFETY: shrinking exposes nothing uninitialized; the elements given
    // up own no memory (and one that did would only leak).
    unsafe { batch.set_len(0) };
}

fn finish_tee(tee: &TeeSink, pid: u32) {
    if let Err(e) = tee.finish() {
        eprintln!("memcollect: cannot save the stream of pid {pid}: {e}");
    }
}

/// The stream's `Hello` and the rest of its batch.
fn first_hello<R: Read>(frames: &mut FrameReader<R>) -> Result<(Hello, Vec<Event>), IngestError> {
    loop {
        let Some(mut batch) = frames.next_batch().map_err(IngestError::Frame)? else {
            return Err(IngestError::NoHello);
        };
        if batch.is_empty() {
            continue;
        }
        return match batch.remove(0) {
            Event::Hello(h) => Ok((h, batch)),
            _ => Err(IngestError::NoHello),
        };
    }
}

/// Where a stream's events go: its session, and whatever else must see them.
struct Sink<'a> {
    registry: &'a Registry,
    handle: &'a SessionHandle,
    /// Answers to the live process (see [`ingest`]).
    replies: Option<Box<dyn Write>>,
    symbols: Option<&'a Arc<SymbolCache>>,
}

impl Sink<'_> {
    fn apply_all<R: Read>(
        &mut self,
        mut first: Vec<Event>,
        frames: &mut FrameReader<R>,
    ) -> Result<(), IngestError> {
        self.apply_batch(&mut first)?;
        while let Some(mut batch) = frames.next_batch().map_err(IngestError::Frame)? {
            self.apply_batch(&mut batch)?;
            forget_applied(&mut batch);
        }
        Ok(())
    }

    /// Applies a batch of events in place (see [`crate::state::Session::apply_in_place`]).
    fn apply_batch(&mut self, events: &mut [Event]) -> Result<(), IngestError> {
        let mut session = self.handle.lock();
        let mut rest = events;
        while let Some((event, after)) = rest.split_first_mut() {
            if let (Event::Alloc(a), [Event::Free(f), ..]) = (&*event, &*after) {
                if Session::is_pair(a, f) {
                    session.apply_pair(a, f);
                    rest = &mut after[1..];
                    continue;
                }
            }
            rest = after;
            match event {
                Event::Forked { child_pid, .. } => self.registry.offer_fork(
                    session.hello().pid,
                    *child_pid,
                    session.fork_snapshot(),
                ),
                Event::ScanRequest { .. } => {
                    if let Some(out) = self.replies.as_mut() {
                        let mut frame = Vec::new();
                        session.scan_request(|set| encode_message(set, &mut frame));
                        if out.write_all(&frame).and_then(|()| out.flush()).is_err() {
                            // The process gave up waiting; it exits without a scan.
                            self.replies = None;
                        }
                    }
                }
                Event::Module(module) => {
                    if let Some(symbols) = self.symbols {
                        symbols.warm(module);
                    }
                }
                _ => {}
            }
            session
                .apply_in_place(event)
                .map_err(IngestError::Protocol)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use memshim_proto::{FrameWriter, Module, Segment};

    use super::*;

    #[test]
    fn announced_modules_are_parsed_in_the_background() {
        let exe = std::env::current_exe().expect("test binary");
        let path = exe.display().to_string();
        let hello = Event::Hello(crate::state::tests::hello(5, None));
        let module = Event::Module(Module {
            ts: 1,
            path: path.clone(),
            base: 0x5555_0000_0000,
            segments: vec![Segment {
                vaddr: 0x1000,
                memsz: 0x1000,
                file_offset: 0x1000,
                executable: true,
            }],
            build_id: vec![],
        });
        let mut w = FrameWriter::new(Vec::new()).expect("header");
        w.write_batch(&[hello, module]).expect("batch");
        let stream = w.into_inner().expect("stream");

        let symbols = Arc::new(SymbolCache::default());
        let registry = Registry::default();
        ingest(&registry, &stream[..], None, None, Some(&symbols)).expect("ingested");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !symbols.has_looked_up(&path) {
            assert!(Instant::now() < deadline, "the module was never parsed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

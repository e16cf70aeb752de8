//! The collector's socket: one thread per connection, streams and control
//! requests told apart by their first eight bytes.

use std::fs::{self, DirBuilder};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use memshim_proto::STREAM_MAGIC;

use crate::analysis::snapshots::SnapshotStore;
use crate::control::{self, CONTROL_MAGIC};
use crate::ingest::{ingest, SaveTo};
use crate::registry::Registry;
use crate::symbolize::SymbolCache;

/// A request to stop serving that wakes the accept loop at once: a flag
/// and a socket pair whose read end the loop polls beside the listener (a
/// timed poll would make every `memcollect run` wait out its interval).
#[derive(Debug)]
pub struct Stop {
    requested: Arc<AtomicBool>,
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

impl Stop {
    /// A stop not yet requested.
    pub fn new() -> io::Result<Stop> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        Ok(Stop {
            requested: Arc::new(AtomicBool::new(false)),
            wake_rx,
            wake_tx,
        })
    }

    /// Requests the stop and wakes the accept loop.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        // A full socket buffer already holds a wake-up; nothing else can fail here.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Requests the stop when one of `signals` arrives.
    pub fn on_signals(&self, signals: &[i32]) -> io::Result<()> {
        for &signal in signals {
            signal_hook::flag::register(signal, Arc::clone(&self.requested))?;
            signal_hook::low_level::pipe::register(signal, self.wake_tx.try_clone()?)?;
        }
        Ok(())
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// Counts the connections being served, to wait for them to finish.
#[derive(Debug, Default)]
struct Active {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Active {
    fn enter(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn leave(&self) {
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count -= 1;
        if *count == 0 {
            self.idle.notify_all();
        }
    }
}

/// What every connection thread shares.
#[derive(Debug)]
struct Shared {
    registry: Arc<Registry>,
    cache: Arc<SymbolCache>,
    data_dir: Option<PathBuf>,
    snapshots: SnapshotStore,
    active: Active,
}

/// A bound collector socket.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `path` (creating its directory with mode 0700, replacing a stale
    /// socket, refusing if a collector is live there).
    pub fn bind(
        path: &Path,
        registry: Arc<Registry>,
        cache: Arc<SymbolCache>,
        data_dir: Option<PathBuf>,
    ) -> Result<Server, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
        }
        clear_stale_socket(path)?;
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        Ok(Server {
            listener,
            path: path.to_owned(),
            shared: Arc::new(Shared {
                registry,
                cache,
                snapshots: SnapshotStore::new(data_dir.clone()),
                data_dir,
                active: Active::default(),
            }),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `stop` is requested, then accepts those
    /// already waiting and returns (connection threads go on).
    pub fn serve(&self, stop: &Stop) {
        loop {
            let stopping = stop.is_requested();
            self.accept_waiting();
            if stopping {
                return;
            }
            let mut fds =
                [self.listener.as_raw_fd(), stop.wake_rx.as_raw_fd()].map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            // SAFETY: valid pollfds, for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        }
    }

    fn accept_waiting(&self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.spawn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("memcollect: accepting a connection failed: {e}");
                    return;
                }
            }
        }
    }

    fn spawn(&self, stream: UnixStream) {
        let shared = Arc::clone(&self.shared);
        shared.active.enter();
        let spawned = thread::Builder::new()
            .name("memcollect-conn".into())
            .spawn(move || {
                handle(&shared, stream);
                shared.active.leave();
            });
        if let Err(e) = spawned {
            eprintln!("memcollect: cannot start a connection thread: {e}");
            self.shared.active.leave();
        }
    }

    /// Waits until no connection is being served, at most `timeout`; true if idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let active = &self.shared.active;
        let mut count = active.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            count = active
                .idle
                .wait_timeout(count, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Removes the socket file.
    pub fn remove_socket(&self) {
        // The file may already be gone; nothing to report then.
        let _ = fs::remove_file(&self.path);
    }
}

fn clear_stale_socket(path: &Path) -> Result<(), String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another collector is already listening on {}",
            path.display()
        ));
    }
    fs::remove_file(path)
        .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))
}

fn handle(shared: &Shared, mut stream: UnixStream) {
    if let Err(e) = stream.set_nonblocking(false) {
        eprintln!("memcollect: connection setup failed: {e}");
        return;
    }
    let mut magic = [0u8; 8];
    if let Err(e) = stream.read_exact(&mut magic) {
        eprintln!("memcollect: a peer closed its connection before identifying itself ({e})");
        return;
    }
    if magic == STREAM_MAGIC {
        let save = shared.data_dir.as_deref().map(|dir| SaveTo { dir });
        // Replies (the live set for an exit scan) go back on the same socket;
        // a process that stops reading must not hold this thread for ever.
        let replies = stream.try_clone().ok().filter(|r| {
            r.set_write_timeout(Some(std::time::Duration::from_secs(30)))
                .is_ok()
        });
        let reader = io::Cursor::new(magic).chain(stream);
        let replies = replies.map(|r| Box::new(r) as Box<dyn io::Write>);
        if let Err(failure) = ingest(&shared.registry, reader, save, replies, Some(&shared.cache)) {
            eprintln!("memcollect: {failure}");
        }
    } else if magic == CONTROL_MAGIC {
        if let Err(e) = control::serve(
            &mut stream,
            &shared.registry,
            &shared.cache,
            &shared.snapshots,
        ) {
            eprintln!("memcollect: control request failed: {e}");
        }
    } else {
        eprintln!("memcollect: rejected a connection that is neither a memshim stream nor a control request");
    }
}

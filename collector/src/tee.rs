//! Saving a raw stream to a trace file while it is read.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
enum Sink {
    /// Bytes read before the file name is known (it needs the pid).
    Buffer(Vec<u8>),
    File(PathBuf, BufWriter<File>),
    Off,
}

/// Where the bytes of a [`TeeReader`] go; shared with the code that names the file.
#[derive(Debug, Clone)]
pub struct TeeSink(Arc<Mutex<Sink>>);

/// A reader that copies every byte it reads into a [`TeeSink`].
#[derive(Debug)]
pub struct TeeReader<R> {
    inner: R,
    sink: TeeSink,
}

impl<R: Read> TeeReader<R> {
    /// Wraps `inner`; bytes are buffered until [`TeeSink::open`] names the file.
    pub fn new(inner: R) -> (Self, TeeSink) {
        let sink = TeeSink(Arc::new(Mutex::new(Sink::Buffer(Vec::new()))));
        (
            TeeReader {
                inner,
                sink: sink.clone(),
            },
            sink,
        )
    }
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write(&buf[..n]);
        Ok(n)
    }
}

impl TeeSink {
    fn write(&self, bytes: &[u8]) {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = match &mut *sink {
            Sink::Buffer(b) => {
                b.extend_from_slice(bytes);
                None
            }
            Sink::File(path, f) => f.write_all(bytes).err().map(|e| (path.clone(), e)),
            Sink::Off => None,
        };
        if let Some((path, e)) = failed {
            eprintln!(
                "memcollect: cannot write {}: {e}; no longer saving this stream",
                path.display()
            );
            *sink = Sink::Off;
        }
    }

    /// Creates `dir/<pid>-<unix_ms>.mst` and writes what was read so far into it.
    pub fn open(&self, dir: &Path, pid: u32, unix_ms: u64) -> io::Result<PathBuf> {
        let path = dir.join(format!("{pid}-{unix_ms}.mst"));
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let opened = File::create(&path).and_then(|f| {
            let mut w = BufWriter::new(f);
            if let Sink::Buffer(b) = &*sink {
                w.write_all(b)?;
            }
            Ok(w)
        });
        match opened {
            Ok(w) => {
                *sink = Sink::File(path.clone(), w);
                Ok(path)
            }
            Err(e) => {
                *sink = Sink::Off;
                Err(e)
            }
        }
    }

    /// Stops copying; buffered bytes are dropped.
    pub fn disable(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Sink::Off;
    }

    /// Flushes the file, if one is open.
    pub fn finish(&self) -> io::Result<()> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Sink::File(_, f) = &mut *sink {
            f.flush()?;
        }
        *sink = Sink::Off;
        Ok(())
    }
}

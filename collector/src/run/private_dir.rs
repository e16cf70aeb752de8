//! A private temporary directory for the run's socket.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory with mode 0700, removed with its contents on drop.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `$TMPDIR/memcollect-<pid>-<nonce>`.
    pub fn create() -> io::Result<Self> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        let mut nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for _ in 0..64 {
            let path = base.join(format!("memcollect-{pid}-{nonce:08x}"));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    nonce = nonce.wrapping_mul(2_654_435_761).wrapping_add(1);
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free name in {}", base.display()),
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // Best effort: a leftover empty directory in $TMPDIR is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

//! Symbolization results kept on disk between runs, one file per build-id.
//!
//! With debug information installed (Debian's `libc6-dbg`, say), the first
//! lookup in a file decompresses and parses its DWARF: 27 ms of CPU for
//! glibc's, more than a short command takes to run. What an address of a
//! given build resolves to never changes, so the collector saves what its
//! reports resolved, keyed by build-id, and later runs read it back instead
//! of parsing the file again (the way `perf`'s build-id cache and debuginfod
//! clients keep what they fetched).
//!
//! Only files whose debug information was found are saved: a file without it
//! costs little to look up again, and is looked up again once its debug
//! package is installed. Every error (no directory, a corrupt or foreign
//! file) only means parsing the file as before.
//!
//! The directory is `$MEMSHIM_SYMBOL_CACHE`, else
//! `$XDG_CACHE_HOME/memshim/symbols`, else `~/.cache/memshim/symbols`;
//! `MEMSHIM_SYMBOL_CACHE=off` turns the cache off. At most [`MAX_FILES`] files
//! are kept: the least recently saved go first.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Located;

/// The variable that sets the cache directory, or turns the cache off.
pub const ENV_SYMBOL_CACHE: &str = "MEMSHIM_SYMBOL_CACHE";
/// Version of the files: bump it (and [`EXTENSION`]) when their layout or
/// the way a result is computed changes (another symbolizer, other
/// demangling); files of another version are ignored.
const FORMAT: u32 = 1;
/// Extension of the cache files (of this [`FORMAT`]).
const EXTENSION: &str = "syms1";
/// Most files kept in the directory.
const MAX_FILES: usize = 1000;
/// Most addresses kept per file (a file with more is not saved again).
const MAX_ENTRIES: usize = 1 << 18;

/// One saved result: an ELF virtual address and the functions there, innermost first.
pub type Entry = (u64, Vec<Located>);

/// What one cache file holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    build_id: Vec<u8>,
    entries: Vec<Entry>,
}

/// A directory of saved symbolization results.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The cache the environment asks for (see the module documentation);
    /// `None` when it is turned off or no directory can be named.
    pub fn from_env() -> Option<DiskCache> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = match var(ENV_SYMBOL_CACHE) {
            Some(v) if v == OsStr::new("off") => return None,
            Some(v) => PathBuf::from(v),
            None => match (var("XDG_CACHE_HOME"), var("HOME")) {
                (Some(xdg), _) => Path::new(&xdg).join("memshim/symbols"),
                (None, Some(home)) => Path::new(&home).join(".cache/memshim/symbols"),
                (None, None) => return None,
            },
        };
        Some(DiskCache::at(dir))
    }

    /// The cache in `dir` (created when something is first saved).
    pub fn at(dir: impl Into<PathBuf>) -> DiskCache {
        DiskCache { dir: dir.into() }
    }

    fn path(&self, build_id: &[u8]) -> PathBuf {
        let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.{EXTENSION}"))
    }

    /// The saved results for the file with `build_id` (empty if there are
    /// none, or they cannot be read).
    pub fn load(&self, build_id: &[u8]) -> Vec<Entry> {
        let Ok(bytes) = fs::read(self.path(build_id)) else {
            return Vec::new();
        };
        match bincode::serde::decode_from_slice::<Saved, _>(&bytes, config()) {
            Ok((saved, used))
                if used == bytes.len() && saved.format == FORMAT && saved.build_id == build_id =>
            {
                saved.entries
            }
            _ => Vec::new(),
        }
    }

    /// Saves `entries` for the file with `build_id`, with those the file
    /// already holds (another collector may have added some). Best effort:
    /// a failure leaves the cache as it was.
    pub fn save(&self, build_id: &[u8], entries: Vec<Entry>) {
        let mut merged = self.load(build_id);
        let known: std::collections::HashSet<u64> = merged.iter().map(|(a, _)| *a).collect();
        merged.extend(entries.into_iter().filter(|(a, _)| !known.contains(a)));
        if merged.len() > MAX_ENTRIES || fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        merged.sort_unstable_by_key(|(a, _)| *a);
        let saved = Saved {
            format: FORMAT,
            build_id: build_id.to_vec(),
            entries: merged,
        };
        let Ok(bytes) = bincode::serde::encode_to_vec(&saved, config()) else {
            return;
        };
        // Written aside, then renamed: readers see the old file or the new
        // one, never half of one.
        let path = self.path(build_id);
        let tmp = path.with_extension(format!("{EXTENSION}.{}", std::process::id()));
        let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&bytes));
        if written.and_then(|()| fs::rename(&tmp, &path)).is_err() {
            let _ = fs::remove_file(&tmp);
            return;
        }
        self.prune();
    }

    /// Removes the least recently saved files beyond [`MAX_FILES`].
    fn prune(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension() == Some(OsStr::new(EXTENSION)))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= MAX_FILES {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - MAX_FILES] {
            let _ = fs::remove_file(path);
        }
    }
}

/// bincode's standard coding, with a bound on what a corrupt length may
/// make the decoder reserve (a full file is a few MiB).
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 64 << 20 }>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(function: &str, line: u32) -> Vec<Located> {
        vec![Located {
            function: function.into(),
            file: Some("f.c".into()),
            line: Some(line),
        }]
    }

    #[test]
    fn saved_results_read_back_merged_and_corruption_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().join("symbols"));
        assert!(cache.load(b"\x12\x34").is_empty(), "nothing saved yet");
        cache.save(b"\x12\x34", vec![(0x20, frames("b", 2))]);
        cache.save(b"\x12\x34", vec![(0x10, frames("a", 1))]);
        assert_eq!(
            cache.load(b"\x12\x34"),
            vec![(0x10, frames("a", 1)), (0x20, frames("b", 2))]
        );
        assert!(cache.load(b"\x56").is_empty(), "another build-id");

        let path = dir.path().join("symbols/1234.syms1");
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).unwrap();
        assert!(cache.load(b"\x12\x34").is_empty(), "a cut file is ignored");
        cache.save(b"\x12\x34", vec![(0x30, frames("c", 3))]);
        assert_eq!(cache.load(b"\x12\x34"), vec![(0x30, frames("c", 3))]);
    }

    #[test]
    fn the_oldest_files_go_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path());
        for i in 0..MAX_FILES as u32 + 3 {
            fs::write(dir.path().join(format!("{i:08x}.syms1")), b"").unwrap();
            let old =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(i));
            let file = fs::File::options()
                .write(true)
                .open(dir.path().join(format!("{i:08x}.syms1")))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        cache.save(b"\xff", vec![(1, frames("a", 1))]);
        let left = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, MAX_FILES);
        assert!(
            !dir.path().join("00000000.syms1").exists(),
            "oldest removed"
        );
        assert!(dir.path().join("ff.syms1").exists(), "the new one kept");
    }
}

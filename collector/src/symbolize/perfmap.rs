//! `/tmp/perf-PID.map`: the names of JIT-compiled code, as written by Node
//! (`--perf-basic-prof`), Python ≥ 3.12 (`-X perf`) and other runtimes.
//!
//! Each line is `START SIZE NAME` with `START` and `SIZE` in hex. The file is
//! only ever appended to; when ranges overlap (code freed and its memory
//! reused), the later line wins, as in `perf`. Malformed lines and a cut last
//! line are skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest perf map read (bytes); the rest of a larger file is ignored.
const MAX_MAP_BYTES: u64 = 256 << 20;
/// Entries looked at before the one found by start, for overlapping ranges.
const OVERLAP_SCAN: usize = 64;

/// One named range of JIT code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    /// Line number in the file: later lines supersede earlier ones.
    order: usize,
    name: String,
}

/// A parsed perf map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfMap {
    /// By start address.
    entries: Vec<Entry>,
    /// Bytes of the file that were read.
    read_bytes: u64,
}

/// The perf map of process `pid`.
pub fn path_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

impl PerfMap {
    /// Parses perf map text; bad lines are skipped.
    pub fn parse(text: &str) -> PerfMap {
        let mut entries: Vec<Entry> = text
            .lines()
            .enumerate()
            .filter_map(|(order, line)| {
                let mut parts = line.trim_end_matches('\r').splitn(3, ' ');
                let start = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
                let size = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
                let name = parts.next()?.trim();
                (size > 0 && !name.is_empty()).then(|| Entry {
                    start,
                    end: start.saturating_add(size),
                    order,
                    name: name.to_owned(),
                })
            })
            .collect();
        entries.sort_by_key(|e| (e.start, e.order));
        PerfMap {
            entries,
            read_bytes: text.len() as u64,
        }
    }

    /// Reads `path`; `None` when it cannot be read. Only whole lines count:
    /// a line still being written is left for the next read.
    pub fn read(path: &Path) -> Option<PerfMap> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_MAP_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..whole]);
        let mut map = PerfMap::parse(&text);
        map.read_bytes = whole as u64;
        Some(map)
    }

    /// Bytes of the file this map was read from.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Number of named ranges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map names nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the code containing `addr` (the latest line that does).
    pub fn find(&self, addr: u64) -> Option<&str> {
        let after = self.entries.partition_point(|e| e.start <= addr);
        self.entries[..after]
            .iter()
            .rev()
            .take(OVERLAP_SCAN)
            .filter(|e| addr < e.end)
            .max_by_key(|e| e.order)
            .map(|e| e.name.as_str())
    }
}

/// The source location at the end of a JIT name, as V8 writes it
/// (`JS:*fn /path/x.js:12:3`, `LazyCompile:~fn file:///x.mjs:4`): file and line.
pub fn source_of(name: &str) -> Option<(String, u32)> {
    let location = name.rsplit(' ').next()?;
    if location.len() == name.len() {
        return None;
    }
    let mut parts = location.rsplitn(3, ':');
    let last = parts.next()?;
    let prev = parts.next()?;
    let (file, line) = match (prev.parse::<u32>(), parts.next()) {
        (Ok(line), Some(file)) if last.parse::<u32>().is_ok() => (file, line),
        _ => (location.rsplit_once(':')?.0, last.parse().ok()?),
    };
    (!file.is_empty() && line > 0).then(|| (file.to_owned(), line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_win_and_bad_lines_are_skipped() {
        let map = PerfMap::parse(
            "1000 100 JS:~first /x.js:1:1\nnot a line\n1000 80 JS:*first /x.js:1:1\n2000 10 Builtin:Foo\n30",
        );
        assert_eq!(map.len(), 3);
        assert_eq!(map.find(0x1010), Some("JS:*first /x.js:1:1"));
        assert_eq!(map.find(0x1090), Some("JS:~first /x.js:1:1"));
        assert_eq!(map.find(0x200f), Some("Builtin:Foo"));
        assert_eq!(map.find(0x2010), None);
        assert_eq!(map.find(0xfff), None);
    }

    #[test]
    fn a_cut_last_line_is_left_for_later() {
        let path = std::env::temp_dir().join(format!("memcollect-perfmap-{}", std::process::id()));
        std::fs::write(&path, "1000 10 JS:~a /a.js:2:3\n2000 10 JS:~b /b.").unwrap();
        let map = PerfMap::read(&path).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.read_bytes(), 24);
        assert!(PerfMap::read(Path::new("/nonexistent/perf-1.map")).is_none());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sources_are_split_off_names() {
        assert_eq!(
            source_of("JS:*allocInAlpha /tmp/a.js:12:3"),
            Some(("/tmp/a.js".into(), 12))
        );
        assert_eq!(
            source_of("LazyCompile:~f file:///x.mjs:4"),
            Some(("file:///x.mjs".into(), 4))
        );
        assert_eq!(source_of("Builtin:ArgumentsAdaptor"), None);
        assert_eq!(source_of("py::f:/x.py"), None);
    }
}

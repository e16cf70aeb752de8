//! Named reports kept by a serving collector (`memcollect snapshot NAME`):
//! in memory, and with `--data-dir` also on disk as `DIR/snapshot-NAME.json`
//! (a JSON report, which `memcollect diff` also accepts as a file).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::report::Report;

/// Snapshots kept in memory; older ones stay on disk only.
const MAX_IN_MEMORY: usize = 64;
/// Sites kept per process in a snapshot.
pub const SNAPSHOT_SITES: usize = 10_000;

/// The snapshots of one collector.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    dir: Option<PathBuf>,
    saved: Mutex<BTreeMap<String, (u64, Report)>>,
}

/// Checks a snapshot name: 1 to 100 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid snapshot name {name:?}: use 1 to 100 letters, digits, '.', '_' or '-'"
        ))
    }
}

impl SnapshotStore {
    /// A store that also writes to `dir`, when given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        SnapshotStore {
            dir,
            saved: Mutex::default(),
        }
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("snapshot-{name}.json")))
    }

    /// Keeps `report` as `name` (replacing an older one of that name).
    pub fn save(&self, name: &str, report: &Report) -> Result<(), String> {
        validate_name(name)?;
        if let Some(path) = self.file(name) {
            let json = serde_json::to_vec_pretty(report)
                .map_err(|e| format!("cannot encode the snapshot: {e}"))?;
            std::fs::write(&path, json)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = saved.values().map(|(s, _)| *s + 1).max().unwrap_or(0);
        saved.insert(name.to_owned(), (seq, report.clone()));
        while saved.len() > MAX_IN_MEMORY {
            let oldest = saved
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(n, _)| n.clone());
            match oldest {
                Some(n) => saved.remove(&n),
                None => break,
            };
        }
        Ok(())
    }

    /// The snapshot `name`, from memory or from the data directory.
    pub fn get(&self, name: &str) -> Result<Report, String> {
        validate_name(name)?;
        if let Some((_, r)) = self
            .saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(r.clone());
        }
        if let Some(path) = self.file(name).filter(|p| p.is_file()) {
            let text =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return serde_json::from_slice(&text)
                .map_err(|e| format!("{} is not a report: {e}", path.display()));
        }
        Err(format!("no snapshot named {name:?}"))
    }

    /// The names of the snapshots in memory.
    pub fn names(&self) -> Vec<String> {
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(Some(dir.path().to_owned()));
        let r = Report {
            version: 1,
            processes: vec![],
        };
        store.save("before", &r).unwrap();
        assert_eq!(store.get("before").unwrap(), r);
        assert!(dir.path().join("snapshot-before.json").is_file());
        let fresh = SnapshotStore::new(Some(dir.path().to_owned()));
        assert_eq!(fresh.get("before").unwrap(), r, "read back from disk");
        assert!(store.get("after").unwrap_err().contains("no snapshot"));
        assert!(store.save("../x", &r).is_err());
        assert!(store.save("", &r).is_err());
        assert_eq!(store.names(), vec!["before".to_string()]);
    }
}

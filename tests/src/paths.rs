//! Where things are.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the workspace
/// root when relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// `tests/programs/`.
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// `<target>/release/memcollect`.
pub fn memcollect_path() -> PathBuf {
    target_dir().join("release").join("memcollect")
}

/// `<target>/release/libmemshim.so`.
pub fn shim_path() -> PathBuf {
    target_dir().join("release").join("libmemshim.so")
}

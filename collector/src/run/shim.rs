//! Finding `libmemshim.so`.

use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::run::target::CANNOT_PROFILE;

/// Environment variable naming the shim library.
pub const ENV_LIB: &str = "MEMSHIM_LIB";
/// File name of the shim library.
const LIB_NAME: &str = "libmemshim.so";

fn absolute(path: &Path, origin: &str) -> Result<PathBuf, Failure> {
    if !path.is_file() {
        return Err(Failure::with_code(
            format!("the shim {} ({origin}) does not exist", path.display()),
            CANNOT_PROFILE,
        ));
    }
    path.canonicalize().map_err(|e| {
        Failure::with_code(format!("the shim {}: {e}", path.display()), CANNOT_PROFILE)
    })
}

/// `--shim`, else `$MEMSHIM_LIB`, else `libmemshim.so` next to this executable,
/// else `../lib/libmemshim.so` relative to it. Always an absolute path.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(path) = explicit {
        return absolute(path, "--shim");
    }
    if let Some(path) = std::env::var_os(ENV_LIB).filter(|p| !p.is_empty()) {
        return absolute(Path::new(&path), ENV_LIB);
    }
    let exe = std::env::current_exe().map_err(|e| {
        Failure::with_code(
            format!("cannot locate memcollect itself: {e}"),
            CANNOT_PROFILE,
        )
    })?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [dir.join(LIB_NAME), dir.join("../lib").join(LIB_NAME)];
    for candidate in &candidates {
        if candidate.is_file() {
            return absolute(candidate, "next to memcollect");
        }
    }
    Err(Failure::with_code(
        format!(
            "cannot find {LIB_NAME} (looked in {} and {}); pass --shim PATH or set {ENV_LIB}",
            candidates[0].display(),
            candidates[1].display()
        ),
        CANNOT_PROFILE,
    ))
}

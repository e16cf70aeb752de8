//! Builds the release binaries once per test process.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::paths;

/// The two artefacts under test.
#[derive(Debug, Clone)]
pub struct Memshim {
    pub memcollect: PathBuf,
    pub shim: PathBuf,
}

static BUILT: OnceLock<Result<Memshim, String>> = OnceLock::new();

/// Builds `memshim` and `memshim-collector` in release mode (once per test
/// process) and returns the paths of `memcollect` and `libmemshim.so`.
/// Panics, with cargo's output, if the build fails.
///
/// `MEMSHIM_TESTS_NO_BUILD=1` skips the build and uses whatever is there.
pub fn memshim() -> Memshim {
    BUILT
        .get_or_init(|| {
            let m = Memshim {
                memcollect: paths::memcollect_path(),
                shim: paths::shim_path(),
            };
            if std::env::var_os("MEMSHIM_TESTS_NO_BUILD").is_none() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let out = Command::new(cargo)
                    .current_dir(paths::workspace_root())
                    .args([
                        "build",
                        "--release",
                        "-p",
                        "memshim",
                        "-p",
                        "memshim-collector",
                    ])
                    .env("CARGO_TARGET_DIR", paths::target_dir())
                    .output()
                    .map_err(|e| format!("cannot run cargo: {e}"))?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let tail: Vec<&str> = err.lines().rev().take(60).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return Err(format!(
                        "cargo build --release -p memshim -p memshim-collector failed ({}):\n{}",
                        out.status,
                        tail.join("\n")
                    ));
                }
            }
            for p in [&m.memcollect, &m.shim] {
                if !p.is_file() {
                    return Err(format!("{} does not exist after the build", p.display()));
                }
            }
            Ok(m)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

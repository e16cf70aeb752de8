//! Compiling the test programs of `tests/programs/`, once per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::paths;

/// The directory, private to this test process, that holds compiled programs
/// (removed when the process ends normally... or left in the temp dir).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("memshim-tests-bin-")
            .tempdir()
            .expect("temp dir")
    })
    .path()
}

/// A fresh scratch directory for one test (kept alive by the returned guard).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memshim-test-")
        .tempdir()
        .expect("temp dir")
}

static CACHE: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();

/// Compiles `tests/programs/<file>` (by its extension: `.c` with gcc, `.cpp`
/// with g++, `.rs` with `rustc -O`) and returns the executable. C and C++ get
/// `-O1 -g -pthread`; C++ also `-Wl,--no-as-needed` so that libstdc++ is always
/// loaded (the empty C++ baseline then has libstdc++'s start-up allocations).
pub fn program(file: &str) -> PathBuf {
    program_with(file, &[], "")
}

/// Like [`program`], with extra compiler flags; `variant` distinguishes the output name.
pub fn program_with(file: &str, extra: &[&str], variant: &str) -> PathBuf {
    let key = format!("{file}|{variant}");
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // Compiling under the lock is fine: each program is compiled once.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key)
        .or_insert_with(|| compile(file, extra, variant))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn compile(file: &str, extra: &[&str], variant: &str) -> Result<PathBuf, String> {
    let src = paths::programs_dir().join(file);
    if !src.is_file() {
        return Err(format!("no such program: {}", src.display()));
    }
    let stem = Path::new(file)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ext = Path::new(file)
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = bin_dir().join(format!("{stem}_{ext}{variant}"));
    let mut cmd = match ext.as_str() {
        "c" | "cpp" => {
            let mut c = Command::new(if ext == "c" { "gcc" } else { "g++" });
            c.args(["-O1", "-g", "-pthread", "-Wall", "-Wextra"]);
            c.arg("-I").arg(paths::programs_dir());
            c.args(extra);
            c.arg(&src).arg("-o").arg(&out);
            if ext == "cpp" {
                c.arg("-Wl,--no-as-needed");
            }
            c
        }
        "rs" => {
            let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
            let mut c = Command::new(rustc);
            c.args(["-O", "--edition", "2021"])
                .args(extra)
                .arg(&src)
                .arg("-o")
                .arg(&out);
            c
        }
        _ => return Err(format!("don't know how to compile {file}")),
    };
    let res = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !res.status.success() {
        return Err(format!(
            "compiling {file} failed ({}):\n{}",
            res.status,
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    Ok(out)
}

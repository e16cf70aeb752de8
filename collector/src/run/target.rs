//! Finding the command to run and checking that the shim can reach it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::elf::{exec_kind, ExecKind};
use crate::failure::Failure;

/// Exit code when the command cannot be found (as shells do).
pub const NOT_FOUND: i32 = 127;
/// Exit code when the command exists but cannot be run (as shells do).
pub const NOT_EXECUTABLE: i32 = 126;
/// Exit code when memcollect cannot profile the command.
pub const CANNOT_PROFILE: i32 = 2;

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `command` through `PATH` (unless it contains a `/`) and refuses
/// statically linked executables.
pub fn resolve(command: &OsStr) -> Result<PathBuf, Failure> {
    let shown = Path::new(command).display().to_string();
    let path = if command.as_bytes().contains(&b'/') {
        PathBuf::from(command)
    } else {
        let search = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&search)
            .map(|dir| dir.join(command))
            .find(|p| is_executable_file(p))
            .ok_or_else(|| Failure::with_code(format!("{shown}: command not found"), NOT_FOUND))?
    };
    let meta = path.metadata().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            NOT_FOUND
        } else {
            NOT_EXECUTABLE
        };
        Failure::with_code(format!("{shown}: {e}"), code)
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Failure::with_code(
            format!("{shown}: permission denied (not an executable file)"),
            NOT_EXECUTABLE,
        ));
    }
    match exec_kind(&path) {
        Ok(ExecKind::StaticElf) => Err(Failure::with_code(
            format!("{shown} is statically linked; LD_PRELOAD cannot profile it"),
            CANNOT_PROFILE,
        )),
        Ok(_) => Ok(path),
        Err(e) => Err(Failure::with_code(format!("{shown}: {e}"), NOT_EXECUTABLE)),
    }
}

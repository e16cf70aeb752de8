//! Where the collector listens by default, agreed by both sides.

use std::path::PathBuf;

/// Environment variable naming the collector's socket.
pub const ENV_SOCKET: &str = "MEMSHIM_SOCKET";
/// Environment variable with the mean bytes between samples (0 = every call).
pub const ENV_SAMPLE_BYTES: &str = "MEMSHIM_SAMPLE_BYTES";
/// Environment variable with a seed for the sampling, for reproducible runs.
pub const ENV_SAMPLE_SEED: &str = "MEMSHIM_SAMPLE_SEED";
/// Environment variable with the maximum number of frames per stack.
pub const ENV_STACK_DEPTH: &str = "MEMSHIM_STACK_DEPTH";
/// Environment variable naming a trace file to write when no collector listens.
pub const ENV_OUTPUT: &str = "MEMSHIM_OUTPUT";
/// Environment variable that turns the shim into a pass-through when set to `1`.
pub const ENV_DISABLE: &str = "MEMSHIM_DISABLE";
/// `0` turns off the reuse of a thread's previous unwind (to compare stacks with and without it).
pub const ENV_UNWIND_MEMO: &str = "MEMSHIM_UNWIND_MEMO";

/// Default number of frames captured per stack.
pub const DEFAULT_STACK_DEPTH: u32 = 64;
/// Largest stack depth the shim accepts.
pub const MAX_STACK_DEPTH: u32 = 128;

/// The directory that holds the default socket: `$XDG_RUNTIME_DIR/memshim`,
/// or `$TMPDIR/memshim-UID` (`/tmp/memshim-UID`) when no runtime directory is set.
///
/// The collector creates it with mode 0700 so that only its user can connect.
pub fn default_socket_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("memshim");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("memshim-{uid}"))
}

/// The collector's socket path: `$MEMSHIM_SOCKET` if set, else the default.
pub fn socket_path() -> PathBuf {
    match std::env::var_os(ENV_SOCKET).filter(|s| !s.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => default_socket_dir().join("collector.sock"),
    }
}

//! The shim's settings, read once from the environment by the constructor.

use std::path::PathBuf;

use memshim_proto::paths;

/// What the user asked for through `MEMSHIM_*` variables.
pub struct Config {
    /// `MEMSHIM_DISABLE=1`: interpose but record nothing.
    pub disabled: bool,
    /// Collector socket (`MEMSHIM_SOCKET` or the default path).
    pub socket: PathBuf,
    /// Trace file for when no collector listens (`MEMSHIM_OUTPUT`, `%p` = pid).
    pub output: Option<String>,
    /// Frames captured per stack (`MEMSHIM_STACK_DEPTH`).
    pub stack_depth: usize,
    /// Mean bytes between samples (`MEMSHIM_SAMPLE_BYTES`); 0 records every call.
    pub sample_bytes: u64,
    /// Seed of the sampling (`MEMSHIM_SAMPLE_SEED`) for reproducible runs; 0: from the clock.
    pub sample_seed: u64,
    /// Whether unwinds reuse the thread's previous one (`MEMSHIM_UNWIND_MEMO`, default on).
    pub unwind_memo: bool,
}

impl Config {
    /// Reads the environment. Malformed numbers fall back to the defaults with a warning.
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Config {
            disabled: var(paths::ENV_DISABLE).is_some_and(|v| v != "0"),
            socket: paths::socket_path(),
            output: var(paths::ENV_OUTPUT),
            stack_depth: number(
                paths::ENV_STACK_DEPTH,
                u64::from(paths::DEFAULT_STACK_DEPTH),
            )
            .clamp(1, u64::from(paths::MAX_STACK_DEPTH)) as usize,
            sample_bytes: number(paths::ENV_SAMPLE_BYTES, 0),
            sample_seed: number(paths::ENV_SAMPLE_SEED, 0),
            unwind_memo: var(paths::ENV_UNWIND_MEMO).is_none_or(|v| v != "0"),
        }
    }

    /// Whether recorded calls are rare: sampling with a mean distance of at
    /// least 4 KiB. The shim then sets up smaller queues and times events
    /// with the vDSO clock rather than first asking the kernel (a file read)
    /// whether the TSC can be trusted.
    pub fn samples_sparsely(&self) -> bool {
        self.sample_bytes >= 4096
    }

    /// The trace file path for process `pid`: `%p` in `MEMSHIM_OUTPUT` becomes the pid.
    pub fn output_path(&self, pid: u32) -> Option<PathBuf> {
        self.output
            .as_ref()
            .map(|o| PathBuf::from(o.replace("%p", &pid.to_string())))
    }
}

fn number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().unwrap_or_else(|_| {
            crate::warn(&format!("ignoring {name}={v:?}: not a whole number"));
            default
        }),
        _ => default,
    }
}

//! What `memcollect run` sets so that interpreters' memory and functions are
//! visible: `PYTHONMALLOC=malloc` for CPython (its small-object allocator
//! otherwise hides most Python objects inside 256 KiB arenas) and
//! `--perf-basic-prof --interpreted-frames-native-stack` in `NODE_OPTIONS` for
//! Node (V8 then writes `/tmp/perf-PID.map`, which names JavaScript functions,
//! interpreted ones included).
//!
//! Both are set for the whole process tree whenever the user did not set them
//! (and did not pass `--no-interpreter-env`): only CPython reads
//! `PYTHONMALLOC` and only Node reads `NODE_OPTIONS`, so they are inert for
//! every other program, and wrappers (`pytest`, `sh -c`, `make check`,
//! `npm test`) reach the interpreters they start. The user is told in one
//! stderr line per interpreter: before the run when the command itself is
//! recognised (its name, its resolved file's name, or a `#!` script's
//! interpreter), else after the run if such a process appeared in the tree.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::report::Report;

/// The variable CPython reads to choose its allocator.
pub const PYTHONMALLOC: &str = "PYTHONMALLOC";
/// The variable Node reads for extra command-line options.
pub const NODE_OPTIONS: &str = "NODE_OPTIONS";
/// The V8 option that writes `/tmp/perf-PID.map`.
pub const PERF_BASIC_PROF: &str = "--perf-basic-prof";
/// The V8 option that gives each interpreted function its own copy of the
/// interpreter's entry code, so that functions not yet compiled are named too
/// (instead of all being `Builtins_InterpreterEntryTrampoline`).
pub const INTERPRETED_FRAMES: &str = "--interpreted-frames-native-stack";
/// Bytes of a script read to find its `#!` line.
const SHEBANG_MAX: usize = 256;

/// An interpreter that memcollect knows how to make visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpreter {
    /// CPython (`python`, `python3`, `python3.11`, ...).
    Python,
    /// Node.js (`node`, `nodejs`).
    Node,
}

impl Interpreter {
    /// The interpreter an executable's file name denotes, if any.
    pub fn of_name(name: &str) -> Option<Interpreter> {
        let name = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        if name.starts_with("python") || name == "pypy" {
            Some(Interpreter::Python)
        } else if name == "node" || name == "nodejs" || name.starts_with("node-") {
            Some(Interpreter::Node)
        } else {
            None
        }
    }

    fn notice(self) -> String {
        match self {
            Interpreter::Python => format!(
                "memcollect: set {PYTHONMALLOC}=malloc so that Python objects are seen; --no-interpreter-env to disable"
            ),
            Interpreter::Node => format!(
                "memcollect: added {PERF_BASIC_PROF} {INTERPRETED_FRAMES} to {NODE_OPTIONS} so that JavaScript functions are named; --no-interpreter-env to disable"
            ),
        }
    }
}

/// The interpreter of a `#!` script (`#!/usr/bin/python3`, `#!/usr/bin/env node`).
fn shebang_interpreter(path: &Path) -> Option<Interpreter> {
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    std::fs::File::open(path)
        .ok()?
        .take(SHEBANG_MAX as u64)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if Path::new(first).file_name().is_some_and(|n| n == "env") {
        words
            .find(|w| !w.starts_with('-') && !w.contains('='))
            .and_then(Interpreter::of_name)
    } else {
        Interpreter::of_name(first)
    }
}

/// The interpreter `command` (as typed) resolving to `program` runs, if recognised.
pub fn recognise(command: &OsStr, program: &Path) -> Option<Interpreter> {
    Interpreter::of_name(&command.to_string_lossy())
        .or_else(|| Interpreter::of_name(&program.to_string_lossy()))
        .or_else(|| {
            program
                .canonicalize()
                .ok()
                .and_then(|p| Interpreter::of_name(&p.to_string_lossy()))
        })
        .or_else(|| shebang_interpreter(program))
}

/// `NODE_OPTIONS` with `--perf-basic-prof --interpreted-frames-native-stack`
/// appended, or `None` when a `--perf-basic-prof` option is already there.
pub fn node_options(existing: Option<&OsStr>) -> Option<OsString> {
    let existing = existing.map(|v| v.to_string_lossy().into_owned());
    let existing = existing.as_deref().unwrap_or("").trim();
    if existing
        .split_whitespace()
        .any(|o| o.starts_with(PERF_BASIC_PROF))
    {
        return None;
    }
    let mut value = existing.to_owned();
    for option in [PERF_BASIC_PROF, INTERPRETED_FRAMES] {
        if !existing.split_whitespace().any(|o| o == option) {
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(option);
        }
    }
    Some(OsString::from(value))
}

/// What [`apply`] set, to announce it and clean up after the run.
#[derive(Debug, Default)]
pub struct InterpreterEnv {
    python: bool,
    node: bool,
    announced: Option<Interpreter>,
    started: Option<SystemTime>,
}

/// Sets the interpreter variables on `cmd` that the environment does not
/// already set, and announces those of the recognised interpreter on stderr.
pub fn apply(cmd: &mut Command, recognised: Option<Interpreter>) -> InterpreterEnv {
    let mut env = InterpreterEnv {
        started: Some(SystemTime::now()),
        ..InterpreterEnv::default()
    };
    if std::env::var_os(PYTHONMALLOC).is_none() {
        cmd.env(PYTHONMALLOC, "malloc");
        env.python = true;
    }
    if let Some(value) = node_options(std::env::var_os(NODE_OPTIONS).as_deref()) {
        cmd.env(NODE_OPTIONS, value);
        env.node = true;
    }
    if let Some(interp) = recognised.filter(|&i| env.sets(i)) {
        eprintln!("{}", interp.notice());
        env.announced = Some(interp);
    }
    env
}

impl InterpreterEnv {
    fn sets(&self, interp: Interpreter) -> bool {
        match interp {
            Interpreter::Python => self.python,
            Interpreter::Node => self.node,
        }
    }

    /// After the run: announces what was set for interpreters that ran in the
    /// tree without having been recognised up front, and removes the
    /// `/tmp/perf-PID.map` files that Node wrote only because of us (they have
    /// been read into the report by then).
    pub fn after_run(&self, report: &Report) {
        let mut seen = Vec::new();
        for p in &report.processes {
            let Some(interp) = Interpreter::of_name(&p.exe) else {
                continue;
            };
            if !self.sets(interp) {
                continue;
            }
            if self.announced != Some(interp) && !seen.contains(&interp) {
                eprintln!("{}", interp.notice());
                seen.push(interp);
            }
            if interp == Interpreter::Node {
                self.remove_perf_map(p.pid);
            }
        }
    }

    fn remove_perf_map(&self, pid: u32) {
        let path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
        // Only a file written during this run (a stale one of a reused pid stays).
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| self.started.is_some_and(|s| t >= s));
        if fresh {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised() {
        assert_eq!(Interpreter::of_name("python3"), Some(Interpreter::Python));
        assert_eq!(
            Interpreter::of_name("/root/.pyenv/versions/3.11.7/bin/python3.11"),
            Some(Interpreter::Python)
        );
        assert_eq!(
            Interpreter::of_name("/usr/bin/node"),
            Some(Interpreter::Node)
        );
        assert_eq!(Interpreter::of_name("nodemon"), None);
        assert_eq!(Interpreter::of_name("make"), None);
    }

    #[test]
    fn node_options_are_appended_once() {
        assert_eq!(
            node_options(None).unwrap(),
            "--perf-basic-prof --interpreted-frames-native-stack"
        );
        assert_eq!(
            node_options(Some(OsStr::new("--max-old-space-size=64"))).unwrap(),
            "--max-old-space-size=64 --perf-basic-prof --interpreted-frames-native-stack"
        );
        assert!(node_options(Some(OsStr::new("--perf-basic-prof-only-functions"))).is_none());
    }

    #[test]
    fn shebangs_name_their_interpreter() {
        let dir = std::env::temp_dir().join(format!("memcollect-shebang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = write("a", "#!/usr/bin/env -S python3 -u\nprint(1)\n");
        let b = write("b", "#!/usr/bin/node\n");
        let c = write("c", "#!/bin/sh\n");
        assert_eq!(shebang_interpreter(&a), Some(Interpreter::Python));
        assert_eq!(shebang_interpreter(&b), Some(Interpreter::Node));
        assert_eq!(shebang_interpreter(&c), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

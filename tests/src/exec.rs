//! Running commands with a timeout, their output captured in files (so that
//! no pipe can fill up and block them).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// The exit code; panics (with the output) if the process died of a signal.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!(
                "process died of signal {:?}; stderr:\n{}",
                self.status.signal(),
                self.stderr_str()
            ),
        }
    }
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The longest any single command of the suite may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Removes from `cmd`'s environment everything that would change how the shim
/// or the collector behaves, so that the caller's environment cannot leak in.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k2 = k.to_string_lossy();
        if k2.starts_with("MEMSHIM_") || k2 == "LD_PRELOAD" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// A started command whose output goes to files.
pub struct Running {
    pub child: Child,
    pub desc: String,
    out_path: PathBuf,
    err_path: PathBuf,
}

/// Starts `cmd` in its own process group, stdin from /dev/null, stdout and
/// stderr into files in `dir`.
pub fn spawn_captured(cmd: &mut Command, dir: &Path) -> Running {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out_path = dir.join(format!("cmd{n}.stdout"));
    let err_path = dir.join(format!("cmd{n}.stderr"));
    let out_f = File::create(&out_path).expect("create stdout file");
    let err_f = File::create(&err_path).expect("create stderr file");
    cmd.stdin(Stdio::null())
        .stdout(out_f)
        .stderr(err_f)
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Running {
        child,
        desc: format!("{cmd:?}"),
        out_path,
        err_path,
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// What it wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.err_path).unwrap_or_default()).into_owned()
    }

    /// Waits for it to end, killing its process group after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let pgid = self.pid();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > timeout {
                let threads = describe_group(pgid);
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {timeout:?} (killed); its threads then:\n{threads}stderr:\n{}",
                    self.desc,
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: std::fs::read(&self.out_path).expect("read stdout"),
            stderr: std::fs::read(&self.err_path).expect("read stderr"),
        }
    }
}

/// Runs `cmd` to completion (killing its whole process group after `timeout`),
/// with stdin from /dev/null and stdout/stderr captured through files in `dir`.
pub fn run_captured(cmd: &mut Command, dir: &Path, timeout: Duration) -> Output {
    spawn_captured(cmd, dir).wait(timeout)
}

/// Runs a program directly (no shim, clean environment), in `dir`.
pub fn run_plain<S: AsRef<OsStr>>(prog: &Path, args: &[S], dir: &Path) -> Output {
    let mut cmd = Command::new(prog);
    cmd.args(args).current_dir(dir);
    scrub_env(&mut cmd);
    run_captured(&mut cmd, dir, DEFAULT_TIMEOUT)
}

/// For hang reports: every thread of every process of a process group, with
/// its state and the kernel function it waits in.
fn describe_group(pgid: i32) -> String {
    let mut out = String::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        let comm = &stat[stat.find('(').map(|i| i + 1).unwrap_or(0)..close];
        out.push_str(&format!("  process {pid} ({comm})\n"));
        if let Ok(tasks) = std::fs::read_dir(p.path().join("task")) {
            for t in tasks.flatten() {
                let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                let tstat = read("stat");
                let state = tstat
                    .rfind(')')
                    .and_then(|i| tstat[i + 1..].split_whitespace().next().map(str::to_owned));
                out.push_str(&format!(
                    "    thread {} {:?} state {} wchan {}\n",
                    t.file_name().to_string_lossy(),
                    read("comm").trim(),
                    state.unwrap_or_default(),
                    read("wchan").trim()
                ));
            }
        }
    }
    out
}

//! A `memcollect serve` collector run as a child, programs that join it with a
//! plain `LD_PRELOAD`, and reports asked for while they run.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::build::memshim;
use crate::exec::{run_captured, scrub_env, spawn_captured, Running};

/// A serving collector on a private socket; stopped (SIGTERM) when dropped.
pub struct Collector {
    running: Option<Running>,
    pub socket: PathBuf,
    dir: PathBuf,
}

impl Collector {
    /// Starts `memcollect serve --socket <dir>/collector.sock` and waits until it listens.
    pub fn start(dir: &Path) -> Collector {
        let m = memshim();
        let socket = dir.join("collector.sock");
        let mut cmd = Command::new(&m.memcollect);
        cmd.arg("serve")
            .arg("--socket")
            .arg(&socket)
            .current_dir(dir)
            .env("XDG_RUNTIME_DIR", dir);
        scrub_env(&mut cmd);
        let mut running = spawn_captured(&mut cmd, dir);
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                running.running(),
                "memcollect serve exited: {}",
                running.stderr_so_far()
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "memcollect serve did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Collector {
            running: Some(running),
            socket,
            dir: dir.to_owned(),
        }
    }

    /// Sends `sig` to the collector (SIGSTOP/SIGCONT to make it stall).
    pub fn signal(&self, sig: i32) {
        if let Some(r) = &self.running {
            r.signal(sig);
        }
    }

    /// Kills the collector at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.signal(libc::SIGKILL);
            let _ = r.child.wait();
        }
    }

    /// Starts `prog args` with the shim preloaded, streaming to this collector.
    pub fn spawn<S: AsRef<OsStr>>(&self, prog: &Path, args: &[S]) -> Running {
        let m = memshim();
        let mut cmd = Command::new(prog);
        scrub_env(&mut cmd);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("LD_PRELOAD", &m.shim)
            .env("MEMSHIM_SOCKET", &self.socket);
        spawn_captured(&mut cmd, &self.dir)
    }

    /// Runs `memcollect <args> --socket <socket>` and returns its stdout (panics on failure).
    pub fn ask(&self, args: &[&str]) -> String {
        let m = memshim();
        let mut cmd = Command::new(&m.memcollect);
        cmd.args(args)
            .arg("--socket")
            .arg(&self.socket)
            .current_dir(&self.dir);
        scrub_env(&mut cmd);
        let out = run_captured(&mut cmd, &self.dir, Duration::from_secs(60));
        assert_eq!(
            out.code(),
            0,
            "memcollect {args:?} failed: {}",
            out.stderr_str()
        );
        out.stdout_str()
    }

    /// `memcollect report --pid P --format json --top N`, parsed: the process's entry.
    pub fn report_of(&self, pid: i32, top: usize) -> Value {
        let text = self.ask(&[
            "report",
            "--pid",
            &pid.to_string(),
            "--format",
            "json",
            "--top",
            &top.to_string(),
        ]);
        let report: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let procs = report["processes"].as_array().expect("processes");
        assert_eq!(procs.len(), 1, "one process with pid {pid}: {text}");
        procs[0].clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // A test may have left it stopped.
            r.signal(libc::SIGCONT);
            r.signal(libc::SIGTERM);
            let _ = r.wait(Duration::from_secs(20));
        }
    }
}

/// The entries of `list` whose `function` is `function`.
pub fn entries_for<'a>(list: &'a Value, function: &str) -> Vec<&'a Value> {
    list.as_array()
        .map(|a| a.iter().filter(|e| e["function"] == function).collect())
        .unwrap_or_default()
}

/// The site of a report's `sites` (or `sites_by_bytes_allocated`) whose frames include `function`.
pub fn site_with<'a>(process: &'a Value, function: &str) -> Option<&'a Value> {
    ["sites", "sites_by_bytes_allocated"]
        .iter()
        .find_map(|list| {
            process[list].as_array()?.iter().find(|s| {
                s["frames"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|fr| fr["function"] == function))
            })
        })
}

//! Owning the profiled process tree: subreaper, reaping, signal forwarding.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;

use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

use crate::state::Exit;

/// Signals forwarded to the command instead of ending memcollect.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Makes this process the reaper of every orphaned descendant.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the process whose pid is in `target`.
///
/// Signals the kernel generated for the terminal's process group already
/// reached the command and are not sent twice. Handlers (not ignored
/// dispositions) are installed, so the command starts with the defaults.
pub fn forward_signals(target: Arc<AtomicI32>) -> io::Result<()> {
    let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED)?;
    thread::Builder::new()
        .name("memcollect-signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                let pid = target.load(Ordering::Acquire);
                if pid > 0 && !matches!(origin.cause, Cause::Kernel) {
                    // SAFETY: kill has no memory preconditions; a stale pid only fails.
                    unsafe { libc::kill(pid, origin.signal) };
                }
            }
        })?;
    Ok(())
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Its pid.
    pub pid: u32,
    /// `Exit::Code` or `Exit::Signal`.
    pub exit: Exit,
}

impl Reaped {
    /// The exit code a shell would give: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match self.exit {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            _ => 1,
        }
    }
}

/// Reaps every descendant until none is left; returns them in reaping order.
pub fn reap_all() -> Vec<Reaped> {
    let mut reaped = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer for the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if pid < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return reaped; // ECHILD: the whole tree is gone.
        }
        let exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            continue;
        };
        reaped.push(Reaped {
            pid: pid as u32,
            exit,
        });
    }
}

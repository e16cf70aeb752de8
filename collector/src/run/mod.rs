//! `memcollect run`: a private collector, the command with the shim
//! preloaded, the report once the whole process tree has ended.
//!
//! * [`target`]: resolving the command, refusing static executables.
//! * [`shim`]: finding `libmemshim.so`.
//! * [`private_dir`]: the 0700 directory of the private socket.
//! * [`reaper`]: subreaper, reaping and signal forwarding.
//! * [`interpreters`]: `PYTHONMALLOC` and `NODE_OPTIONS` for interpreters.

pub mod interpreters;
pub mod private_dir;
pub mod reaper;
pub mod shim;
pub mod target;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use memshim_proto::paths::{ENV_SAMPLE_BYTES, ENV_SOCKET};

use crate::cli::RunArgs;
use crate::commands::output::{emit, Terminal};
use crate::failure::Failure;
use crate::registry::Registry;
use crate::report::build::{build_report_with, ReportOptions};
use crate::report::early::EarlyReports;
use crate::server::{Server, Stop};
use crate::symbolize::SymbolCache;
use private_dir::PrivateDir;
use reaper::{become_subreaper, forward_signals, reap_all};

/// How long streams may take to drain after the last process ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `LD_PRELOAD` with the shim in front of what the environment already preloads.
fn preload_value(shim: &Path) -> OsString {
    let mut value = OsString::from(shim);
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// Runs the command under the profiler; returns the command's exit code, or
/// [`crate::leakcheck::gates::GATE_FAILED`] when a gate failed.
pub fn run(args: RunArgs) -> Result<i32, Failure> {
    let shim = shim::locate(args.shim.as_deref())?;
    let categories = args
        .output
        .categories
        .as_deref()
        .map(crate::analysis::categories::Categories::load)
        .transpose()?
        .map(Arc::new);
    let suppressions = crate::leakcheck::load_suppressions(&args.leaks)?;
    let (command, command_args) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::with_code("no command given", target::CANNOT_PROFILE))?;
    let program = target::resolve(command)?;
    let dir =
        PrivateDir::create().map_err(|e| format!("cannot create a private directory: {e}"))?;
    let registry = Arc::new(Registry::default());
    let options = ReportOptions {
        top: args.output.top,
        pid: None,
        categories,
        suppressions,
        group: args.output.group,
    };
    let cache = Arc::new(SymbolCache::persistent());
    let early = EarlyReports::start(options.clone(), Arc::clone(&cache));
    {
        let early = Arc::clone(&early);
        registry.on_close(Box::new(move |handle| early.queue(handle)));
    }
    let server = Arc::new(Server::bind(
        &dir.path().join("collector.sock"),
        Arc::clone(&registry),
        Arc::clone(&cache),
        None,
    )?);
    let stop = Arc::new(Stop::new().map_err(|e| format!("cannot start the collector: {e}"))?);
    let acceptor = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        thread::Builder::new()
            .name("memcollect-accept".into())
            .spawn(move || server.serve(&stop))
            .map_err(|e| format!("cannot start the collector thread: {e}"))?
    };
    become_subreaper().map_err(|e| format!("cannot become a subreaper: {e}"))?;
    let child_pid = Arc::new(AtomicI32::new(0));
    forward_signals(Arc::clone(&child_pid))
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let mut child = Command::new(&program);
    child
        .arg0(command)
        .args(command_args)
        .env("LD_PRELOAD", preload_value(&shim))
        .env(ENV_SOCKET, server.path())
        .env(ENV_SAMPLE_BYTES, args.sample_bytes.to_string());
    let interpreter_env = if args.no_interpreter_env {
        interpreters::InterpreterEnv::default()
    } else {
        interpreters::apply(&mut child, interpreters::recognise(command, &program))
    };
    let child = child.spawn().map_err(|e| {
        Failure::with_code(
            format!("cannot run {}: {e}", Path::new(command).display()),
            target::NOT_EXECUTABLE,
        )
    })?;
    let pid = child.id();
    child_pid.store(pid as i32, Ordering::Release);
    let reaped = reap_all();
    child_pid.store(0, Ordering::Release);

    stop.request();
    if acceptor.join().is_err() {
        eprintln!("memcollect: the collector thread failed; the report may be incomplete");
    }
    if !server.wait_idle(DRAIN_TIMEOUT) {
        eprintln!(
            "memcollect: some streams were still open {} s after the last process ended; reporting them as cut",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    registry.cut_open_sessions();
    early.wait();
    for r in &reaped {
        registry.refine_exit(r.pid, r.exit);
    }
    let mut report = build_report_with(&registry, &cache, &options, Some(&early));
    interpreter_env.after_run(&report);
    crate::leakcheck::select::only(&mut report, &args.leaks.only);
    server.remove_socket();
    drop(dir);
    emit(
        &report,
        args.output.format,
        args.output.output.as_deref(),
        Terminal::Stderr,
        args.leaks.show_helpers,
    )?;
    let code = reaped
        .iter()
        .find(|r| r.pid == pid)
        .map_or(1, |r| r.shell_code());
    let gate = crate::leakcheck::conclude(&report, &args.leaks, Terminal::Stderr)?;
    // As in `memcollect report`: the state goes with the process, which
    // ends now, instead of being freed block by block after the report.
    std::mem::forget(server);
    std::mem::forget(registry);
    Ok(gate.unwrap_or(code))
}

//! `memcollect run` follows the whole process tree: a shell running two tally
//! programs at once and one after them; every program is a process of the
//! report with its exact numbers, and memcollect exits with the shell's code.

use memshim_tests::*;

#[test]
fn shell_with_concurrent_children() {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let (a, b, c) = (
        program("leak_sites.c"),
        program("aligned.c"),
        program("realloc.c"),
    );
    let script = format!(
        "'{}' & '{}' & wait; '{}'; exit 5",
        a.display(),
        b.display(),
        c.display()
    );
    let run = memcollect_run(
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
        &["--top", "50"],
        dir.path(),
    );
    assert_eq!(
        run.output.status.code(),
        Some(5),
        "memcollect's exit code; stderr:\n{}",
        run.output.stderr_str()
    );
    let text = run.output.stderr_str();
    let mut m = Mismatches::default();
    for name in ["leak_sites", "aligned", "realloc"] {
        let t = Tally::only(&text, name);
        // The final image of the pid (the shell's forked child exec'd it).
        match run
            .processes
            .iter()
            .find(|p| p.pid == t.pid && p.exit != "exec")
        {
            Some(p) => {
                let mut mp = Mismatches::default();
                memshim_vs_tally(&mut mp, p, &t, &base, false);
                if let Err(e) = std::panic::catch_unwind(|| mp.finish(name)) {
                    m.check(
                        false,
                        e.downcast_ref::<String>().cloned().unwrap_or_default(),
                    );
                }
            }
            None => m.check(
                false,
                format!("{name} (pid {}) is not in the report", t.pid),
            ),
        }
    }
    let shell = run.processes.iter().find(|p| p.exit_code() == Some(5));
    m.check(shell.is_some(), "no process exited with code 5 (the shell)");
    m.finish(&format!(
        "process tree (pids in the report: {:?})",
        run.processes
            .iter()
            .map(|p| (p.pid, p.exit.to_string()))
            .collect::<Vec<_>>()
    ));
}

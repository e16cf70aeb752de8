//! python3 and node under `memcollect run`: byte-identical stdout, the same
//! exit code, and symbolized top sites that never point into the shim.

use std::path::PathBuf;
use std::process::Command;

use memshim_tests::*;

fn python() -> Option<PathBuf> {
    if !have_command("python3") {
        skip_notice("python test", "python3 is not installed");
        return None;
    }
    // Resolve wrappers (e.g. pyenv's shim scripts) to the interpreter itself.
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

fn check_interpreter(
    interp: &std::path::Path,
    script: &str,
    expected_code: i32,
    name_hint: &[&str],
) {
    let script = paths::programs_dir().join(script);
    let dir = programs::scratch();
    let plain = run_plain(interp, &[&script], dir.path());
    assert_eq!(
        plain.code(),
        expected_code,
        "plain run: {}",
        plain.stderr_str()
    );
    let run = memcollect_run(interp, &[&script], &["--top", "20"], dir.path());
    assert_eq!(
        run.output.status.code(),
        Some(expected_code),
        "memcollect's exit status; stderr:\n{}",
        run.output.stderr_str()
    );
    assert!(
        run.output.stdout == plain.stdout,
        "stdout differs under memcollect:\n--- plain\n{}\n--- memcollect\n{}",
        plain.stdout_str(),
        run.output.stdout_str()
    );

    let p = run
        .processes
        .iter()
        .max_by_key(|p| p.totals.bytes_allocated)
        .unwrap_or_else(|| panic!("no process in the report"));
    assert_eq!(
        p.exit_code(),
        Some(expected_code as i64),
        "the interpreter's exit in the report"
    );
    assert_eq!(p.totals.lost_events, 0, "lost events");
    assert!(
        p.sites.len() >= 5,
        "expected at least 5 sites, got {}",
        p.sites.len()
    );
    let top: Vec<&report::Site> = p.sites.iter().take(10).collect();
    let described: Vec<String> = top.iter().map(|s| s.describe()).collect();
    let is_named =
        |f: &str| !f.is_empty() && !f.starts_with("0x") && !f.starts_with("??") && f != "<unknown>";
    for s in &top {
        assert!(
            !s.frames.is_empty(),
            "site without frames: {}",
            s.describe()
        );
        assert!(
            s.functions().iter().any(|f| is_named(f)),
            "top site with no named frame: {}",
            s.describe()
        );
    }
    assert!(
        top.iter().any(|s| s
            .functions()
            .iter()
            .any(|f| name_hint.iter().any(|h| f.contains(h)))),
        "no top site names a function containing {name_hint:?}:\n{}",
        described.join("\n")
    );
    for proc_ in &run.processes {
        for s in &proc_.sites {
            assert!(
                !s.frames
                    .iter()
                    .any(|f| f.module.as_deref().unwrap_or("").contains("libmemshim")),
                "a frame points into libmemshim.so: {}",
                s.describe()
            );
        }
    }
}

#[test]
fn python_unchanged_and_symbolized() {
    let Some(py) = python() else { return };
    check_interpreter(&py, "script.py", 3, &["Py", "_Py"]);
}

#[test]
fn node_unchanged_and_symbolized() {
    if !have_command("node") {
        skip_notice("node test", "node is not installed");
        return;
    }
    check_interpreter(
        std::path::Path::new("node"),
        "script.js",
        0,
        &["node::", "v8::"],
    );
}

//! python3 and node under `memcollect run`: byte-identical stdout, the same
//! exit code, and symbolized top sites that never point into the shim;
//! Python 3.11's own frames named in place of the interpreter's.

use std::path::{Path, PathBuf};
use std::process::Command;

use memshim_tests::*;

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
    let Some(py) = leakcheck::real_python() else {
        return;
    };
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

/// The CPython 3.11 interpreters of this machine: the one `python3` runs and
/// Debian's (libpython linked into the executable), where present.
fn pythons_311() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = leakcheck::real_python().into_iter().collect();
    found.push(PathBuf::from("/usr/bin/python3.11"));
    found.retain(|p| {
        Command::new(p)
            .args(["-c", "import sys; print(sys.version_info[:2] == (3, 11))"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"True"))
    });
    found.dedup_by(|a, b| std::fs::canonicalize(&*a).ok() == std::fs::canonicalize(&*b).ok());
    found
}

/// The line of `script` that carries the comment `# {marker}`.
fn marked_line(script: &str, marker: &str) -> i64 {
    let tag = format!("# {marker}");
    script
        .lines()
        .position(|l| l.trim_end().ends_with(&tag))
        .unwrap_or_else(|| panic!("no line marked {tag}")) as i64
        + 1
}

fn check_python_frames(py: &Path) {
    let script_path = paths::programs_dir().join("py_sites.py");
    let script = std::fs::read_to_string(&script_path).expect("py_sites.py");
    let dir = programs::scratch();
    let plain = run_plain(py, &[&script_path], dir.path());
    let run = memcollect_run(py, &[&script_path], &["--top", "10"], dir.path());
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "{}",
        run.output.stderr_str()
    );
    assert!(
        run.output.stdout == plain.stdout,
        "stdout differs under memcollect"
    );
    let p = run
        .processes
        .iter()
        .max_by_key(|p| p.totals.bytes_allocated)
        .expect("a process");
    let sites: Vec<report::Site> = p.json["sites_by_bytes_allocated"]
        .as_array()
        .expect("sites_by_bytes_allocated")
        .iter()
        .map(report::Site::from_json)
        .collect();
    // bytearray(n) asks for n + 1 bytes; each function makes 3.
    for (function, size) in [
        ("alpha", 100_001),
        ("Store.beta", 200_001),
        ("gamma", 300_001),
    ] {
        let site = sites
            .iter()
            .find(|s| {
                s.frames
                    .iter()
                    .any(|f| f.function.as_deref() == Some(function))
            })
            .unwrap_or_else(|| {
                let all: Vec<String> = sites.iter().map(|s| s.describe()).collect();
                panic!(
                    "{}: no site names {function}:\n{}",
                    py.display(),
                    all.join("\n")
                )
            });
        assert_eq!(
            (site.alloc_calls, site.bytes_allocated),
            (3, 3 * size),
            "{function}'s site"
        );
        let python: Vec<(&str, &str, i64)> = site
            .frames
            .iter()
            .filter(|f| f.module.as_deref() == Some("[python]"))
            .map(|f| {
                (
                    f.function.as_deref().unwrap_or("?"),
                    f.file.as_deref().unwrap_or("?"),
                    f.line.unwrap_or(-1),
                )
            })
            .collect();
        let file = script_path.to_str().unwrap();
        assert_eq!(
            python,
            vec![
                (
                    function,
                    file,
                    marked_line(&script, &format!("site:{function}"))
                ),
                (
                    "main",
                    file,
                    marked_line(&script, &format!("call:{function}"))
                ),
                ("<module>", file, marked_line(&script, "call:main")),
            ],
            "{}: Python frames of {function}'s site, innermost first",
            py.display()
        );
        // In place of the interpreter's frames: native frames above, none between.
        let first = site
            .frames
            .iter()
            .position(|f| f.module.as_deref() == Some("[python]"));
        assert!(
            first.is_some_and(|i| i > 0),
            "the allocating native frames come first"
        );
        assert!(
            !site
                .functions()
                .iter()
                .any(|f| f.starts_with("_PyEval_EvalFrameDefault")),
            "an interpreter frame was left in place: {}",
            site.describe()
        );
    }
}

#[test]
fn python_311_frames_named_with_file_and_line() {
    let pythons = pythons_311();
    if pythons.is_empty() {
        skip_notice("python frames test", "no CPython 3.11 interpreter");
    }
    for py in pythons {
        check_python_frames(&py);
    }
}

//! Bad input: clear, single-line errors and non-zero exits, never a crash.

use std::process::Command;

use memshim_tests::*;

fn memcollect(args: &[&std::ffi::OsStr], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(memshim().memcollect);
    cmd.args(args).current_dir(dir);
    scrub_env(&mut cmd);
    run_captured(&mut cmd, dir, DEFAULT_TIMEOUT)
}

fn assert_one_line_error(out: &Output, what: &str) {
    let code = out.status.code();
    assert!(
        code.is_some(),
        "{what}: died of a signal: {:?}\n{}",
        out.status,
        out.stderr_str()
    );
    assert_ne!(
        code,
        Some(0),
        "{what}: exit code 0; stderr:\n{}",
        out.stderr_str()
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one error line on stderr, got:\n{}",
        out.stderr_str()
    );
}

#[test]
fn report_of_garbage_file() {
    let dir = programs::scratch();
    let f = dir.path().join("garbage.trace");
    let mut x: u64 = 0x243F6A8885A308D3;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&f, bytes).unwrap();
    let out = memcollect(&["report".as_ref(), f.as_os_str()], dir.path());
    assert_one_line_error(&out, "memcollect report <garbage>");
}

#[test]
fn report_of_missing_file() {
    let dir = programs::scratch();
    let f = dir.path().join("does-not-exist.trace");
    let out = memcollect(&["report".as_ref(), f.as_os_str()], dir.path());
    assert_one_line_error(&out, "memcollect report <missing file>");
}

#[test]
fn run_of_static_binary() {
    let libc_a = Command::new("gcc")
        .arg("-print-file-name=libc.a")
        .output()
        .expect("gcc");
    let libc_a = String::from_utf8_lossy(&libc_a.stdout).trim().to_owned();
    if !std::path::Path::new(&libc_a).is_absolute() || !std::path::Path::new(&libc_a).exists() {
        skip_notice("static binary test", "no libc.a to link a static binary");
        return;
    }
    let prog = programs::program_with("static_hello.c", &["-static"], "_static");
    let dir = programs::scratch();
    assert_eq!(run_plain(&prog, &[] as &[&str], dir.path()).code(), 0);
    let out = memcollect(
        &["run".as_ref(), "--".as_ref(), prog.as_os_str()],
        dir.path(),
    );
    assert_one_line_error(&out, "memcollect run -- <static binary>");
    let line = out.stderr_lines()[0].to_lowercase();
    assert!(
        line.contains("static") || line.contains("dynamic"),
        "the error should say the binary is static: {line}"
    );
}

#[test]
fn run_of_missing_command() {
    let dir = programs::scratch();
    let out = memcollect(
        &["run".as_ref(), "--".as_ref(), "/no/such/program".as_ref()],
        dir.path(),
    );
    assert_one_line_error(&out, "memcollect run -- /no/such/program");
}

#[test]
fn bogus_flag() {
    let dir = programs::scratch();
    let out = memcollect(&["--bogus-flag".as_ref()], dir.path());
    let code = out.status.code();
    assert!(code.is_some(), "died of a signal: {:?}", out.status);
    assert_ne!(code, Some(0), "memcollect --bogus-flag exited 0");
    assert!(
        !out.stderr_lines().is_empty(),
        "memcollect --bogus-flag printed no error"
    );
}

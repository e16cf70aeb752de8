//! Gates, suppressions and JUnit around whole runs: clean Python and Node
//! pass `--fail-on-leak` thanks to the default suppressions, a ctypes leak
//! fails it and is named, a shell script's three C programs become three
//! JUnit test cases, `--max-peak` and suppression files do what they say.

use std::path::Path;

use memshim_tests::leakcheck::{memcollect_gate, real_python};
use memshim_tests::*;

/// The exit code of a failed gate (documented in `memcollect run --help`).
const GATE_FAILED: i32 = 99;

const CLEAN_PY: &str = "import json, collections, re\nd = collections.OrderedDict(a=[1, 2])\nprint(json.dumps(d), re.sub('a', 'b', 'aa'))";

const CTYPES_LEAK: &str = "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.malloc.restype = ctypes.c_void_p\np = libc.malloc(12345)\ndel p\nprint('done')";

#[test]
fn clean_python_passes_the_gate() {
    let Some(py) = real_python() else { return };
    let dir = programs::scratch();
    let cmd = [py.as_os_str(), "-c".as_ref(), CLEAN_PY.as_ref()];
    let run = memcollect_gate(&["--fail-on-leak"], &cmd, dir.path());
    assert_eq!(run.code(), 0, "{}", run.output.stderr_str());
    let p = run.process_with("python");
    assert_eq!(p["leaks"]["definitely"]["blocks"], 0, "{}", p["leaks"]);
    assert!(
        p["leaks"]["suppressed"]["blocks"].as_i64() > Some(0),
        "{}",
        p["leaks"]
    );
}

#[test]
fn clean_node_passes_the_gate() {
    if !have_command("node") {
        skip_notice("node gate", "node is not installed");
        return;
    }
    let dir = programs::scratch();
    let run = memcollect_gate(
        &["--fail-on-leak"],
        &["node", "-e", "console.log([1, 2].map(x => x * 2).join())"],
        dir.path(),
    );
    assert_eq!(run.code(), 0, "{}", run.output.stderr_str());
    assert_eq!(run.output.stdout_str(), "2,4\n");
}

#[test]
fn ctypes_leak_fails_the_gate_and_is_named() {
    let Some(py) = real_python() else { return };
    let dir = programs::scratch();
    let cmd = [py.as_os_str(), "-c".as_ref(), CTYPES_LEAK.as_ref()];
    let run = memcollect_gate(&["--fail-on-leak"], &cmd, dir.path());
    let err = run.output.stderr_str();
    assert_eq!(run.code(), GATE_FAILED, "{err}");
    assert_eq!(run.output.stdout_str(), "done\n");
    let p = run.process_with("python");
    assert_eq!(p["leaks"]["definitely"]["bytes"], 12345, "{}", p["leaks"]);
    assert_eq!(p["leaks"]["definitely"]["blocks"], 1, "{}", p["leaks"]);
    let site = &p["leak_sites"][0];
    assert_eq!(site["leak"]["class"], "definitely", "{site}");
    assert_eq!(site["leak"]["bytes"], 12345, "{site}");
    // The gate's message names the process, the 12,345-byte site and its ffi/ctypes frames.
    let block = &err[err
        .find("GATE FAILED")
        .unwrap_or_else(|| panic!("no gate message:\n{err}"))..];
    assert!(block.contains(&format!("pid {}", p["pid"])), "{block}");
    let site_line = format!(
        "site {}: 12.1 KiB (12,345 B) in 1 block lost",
        site["id"].as_str().unwrap()
    );
    assert!(block.contains(&site_line), "{block}");
    assert!(
        block.contains("ffi_call") && block.contains("_ctypes"),
        "{block}"
    );
}

#[test]
fn python_deliberate_leaks_show_without_the_default_suppressions() {
    let Some(py) = real_python() else { return };
    let dir = programs::scratch();
    let cmd = [py.as_os_str(), "-c".as_ref(), "print(1)".as_ref()];
    let run = memcollect_gate(
        &["--fail-on-leak=possibly", "--no-default-suppressions"],
        &cmd,
        dir.path(),
    );
    assert_eq!(run.code(), GATE_FAILED, "{}", run.output.stderr_str());
    let p = run.process_with("python");
    let lost = ["definitely", "indirectly", "possibly"]
        .iter()
        .map(|k| p["leaks"][k]["blocks"].as_i64().unwrap())
        .sum::<i64>();
    assert!(lost > 0, "{}", p["leaks"]);
    assert_eq!(p["leaks"]["suppressed"]["blocks"], 0, "{}", p["leaks"]);
    // With the default set, the same run passes at the same level.
    let run = memcollect_gate(&["--fail-on-leak=possibly"], &cmd, dir.path());
    assert_eq!(run.code(), 0, "{}", run.output.stderr_str());
}

fn copy_program(file: &str, name: &str, dir: &Path) {
    let to = dir.join(name);
    std::fs::copy(program(file), &to).unwrap();
}

#[test]
fn shell_script_of_three_programs_gives_three_junit_cases() {
    let dir = programs::scratch();
    let d = dir.path();
    copy_program(BASE_C, "gatecase_clean_a", d);
    copy_program(BASE_C, "gatecase_clean_b", d);
    copy_program("leak_classes.c", "gatecase_leaky", d);
    std::fs::write(
        d.join("suite.sh"),
        "./gatecase_clean_a\n./gatecase_leaky\n./gatecase_clean_b\necho finished\n",
    )
    .unwrap();
    let junit = d.join("out.xml");
    let junit_arg = junit.to_str().unwrap();
    let run = memcollect_gate(
        &[
            "--fail-on-leak",
            "--junit",
            junit_arg,
            "--only",
            "gatecase_*",
        ],
        &["sh", "suite.sh"],
        d,
    );
    let err = run.output.stderr_str();
    assert_eq!(run.code(), GATE_FAILED, "{err}");
    assert_eq!(run.output.stdout_str(), "finished\n");
    // The report holds the three programs only (--only), the leaky one named.
    assert_eq!(
        run.processes().len(),
        3,
        "{:?}",
        run.processes()
            .iter()
            .map(|p| p["command"].clone())
            .collect::<Vec<_>>()
    );
    let leaky = run.process_with("gatecase_leaky");
    let block = &err[err
        .find("GATE FAILED")
        .unwrap_or_else(|| panic!("no gate message:\n{err}"))..];
    assert!(block.contains("1 of 3 processes failed"), "{block}");
    assert!(
        block.contains(&format!("pid {}  ./gatecase_leaky", leaky["pid"])),
        "{block}"
    );
    assert!(
        block.contains("at lose_list") || block.contains("at direct_leak"),
        "{block}"
    );
    assert!(!block.contains("gatecase_clean"), "{block}");
    // JUnit: exactly three test cases, one failure, for the leaky program.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    let failing = xml
        .split("<testcase ")
        .find(|c| c.contains("<failure "))
        .unwrap();
    assert!(
        failing.starts_with("name=\"./gatecase_leaky\" classname=\"memshim\""),
        "{failing}"
    );
    for name in ["./gatecase_clean_a", "./gatecase_clean_b"] {
        assert!(
            xml.contains(&format!("name=\"{name}\" classname=\"memshim\"")),
            "{xml}"
        );
    }
}

#[test]
fn max_peak_passes_at_the_peak_and_fails_below_it() {
    let dir = programs::scratch();
    let prog = program("leak_classes.c");
    let cmd = [prog.as_os_str()];
    let first = memcollect_gate(&[], &cmd, dir.path());
    assert_eq!(first.code(), 0, "{}", first.output.stderr_str());
    let peak = first.process_with("leak_classes")["totals"]["peak_bytes"]
        .as_u64()
        .unwrap();
    // tally: the program's own allocations alone peak at 1,148 B
    assert!(peak >= 1148, "peak {peak}");
    let at = peak.to_string();
    let pass = memcollect_gate(&["--max-peak", &at], &cmd, dir.path());
    assert_eq!(pass.code(), 0, "{}", pass.output.stderr_str());
    let below = (peak - 1).to_string();
    let fail = memcollect_gate(&["--max-peak", &below], &cmd, dir.path());
    let err = fail.output.stderr_str();
    assert_eq!(fail.code(), GATE_FAILED, "{err}");
    assert!(
        err.contains("--max-peak") && err.contains("1 B over"),
        "{err}"
    );
    // Sizes with units.
    let big = memcollect_gate(
        &["--max-peak", "1MiB", "--max-peak-total", "2M"],
        &cmd,
        dir.path(),
    );
    assert_eq!(big.code(), 0, "{}", big.output.stderr_str());
}

#[test]
fn suppressions_silence_a_known_leak() {
    let dir = programs::scratch();
    let d = dir.path();
    let prog = program("leak_classes.c");
    let cmd = [prog.as_os_str()];
    std::fs::write(
        d.join("mine.supp"),
        "# the test program's deliberate leaks\n\
         direct = leak:definitely,possibly | function:direct_leak\n\
         lists = leak:definitely,indirectly | stack:make_list [*];lose_list\n\
         cycle = function:lose_cycle\n\
         interior = leak:possibly | function:keep_interior | module:*leak_classes*\n",
    )
    .unwrap();
    let run = memcollect_gate(
        &["--fail-on-leak=possibly", "--suppressions", "mine.supp"],
        &cmd,
        d,
    );
    assert_eq!(run.code(), 0, "{}", run.output.stderr_str());
    let p = run.process_with("leak_classes");
    for k in ["definitely", "indirectly", "possibly"] {
        assert_eq!(p["leaks"][k]["blocks"], 0, "{k}: {}", p["leaks"]);
    }
    // 3 x 100 + 5 x 48 + 2 x 32 + 64 + 96 B
    assert_eq!(p["leaks"]["suppressed"]["bytes"], 764, "{}", p["leaks"]);
    assert_eq!(p["leaks"]["suppressed"]["blocks"], 12, "{}", p["leaks"]);
    let used: Vec<&str> = p["suppressions_used"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    for name in ["direct", "lists", "cycle", "interior"] {
        assert!(used.contains(&name), "{used:?}");
    }
    assert!(
        p["leak_sites"].as_array().unwrap().is_empty(),
        "{}",
        p["leak_sites"]
    );
}

#[test]
fn generated_suppressions_round_trip() {
    let dir = programs::scratch();
    let d = dir.path();
    let prog = program("leak_classes.c");
    let cmd = [prog.as_os_str()];
    let first = memcollect_gate(
        &["--fail-on-leak=possibly", "--gen-suppressions=gen.supp"],
        &cmd,
        d,
    );
    assert_eq!(first.code(), GATE_FAILED, "{}", first.output.stderr_str());
    let text = std::fs::read_to_string(d.join("gen.supp")).unwrap();
    assert!(
        text.contains("stack:direct_leak [") || text.contains("stack:make_list ["),
        "{text}"
    );
    let second = memcollect_gate(
        &["--fail-on-leak=possibly", "--suppressions", "gen.supp"],
        &cmd,
        d,
    );
    assert_eq!(second.code(), 0, "{}\n{text}", second.output.stderr_str());
}

#[test]
fn a_malformed_suppressions_file_is_one_clear_error() {
    let dir = programs::scratch();
    let d = dir.path();
    std::fs::write(
        d.join("bad.supp"),
        "# ok\nfine = function:x\nbroken = leak:sometimes | function:y\n",
    )
    .unwrap();
    let run = memcollect_gate(&["--suppressions", "bad.supp"], &["true"], d);
    assert_eq!(run.code(), 2);
    let lines = run.output.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("memcollect: bad.supp:3: "),
        "{lines:?}"
    );
    assert!(lines[0].contains("sometimes"), "{lines:?}");
}

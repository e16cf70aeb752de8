//! Readable stacks: the deepest known call chains of C and C++ programs built
//! `-O2 -fomit-frame-pointer -g` and of a Rust program appear complete, in
//! order, with the file:line of each frame (lines marked `@NAME` in the
//! sources) and demangled names; a stripped binary is symbolized from its
//! separate debug file; a `dlclose`d library's site stays named, and
//! libraries loaded and unloaded while threads allocate lose nothing; a binary
//! rebuilt on disk after the run is reported as changed, never misnamed;
//! `--group function|file` sums sites; Python and Node stacks are readable.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use memshim_tests::leakcheck::real_python;
use memshim_tests::report::Site;
use memshim_tests::*;
use serde_json::Value;

/// Flags of the C and C++ chain programs (after the helper's `-O1 -g`).
const OPT: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];
/// What the collector says of frames whose binary changed since the run.
const CHANGED: &str = "<path changed on disk since the run>";

/// The line of every `@NAME` marker in `tests/programs/<file>`.
fn marks(file: &str) -> HashMap<String, u32> {
    let text = std::fs::read_to_string(paths::programs_dir().join(file)).unwrap();
    let mut found = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(at) = line.find("@") {
            let name: String = line[at + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name, i as u32 + 1);
            }
        }
    }
    found
}

/// All sites of a process: both rankings (the same site may be in both).
fn all_sites(p: &ProcessReport) -> Vec<Site> {
    let mut sites = p.sites.clone();
    if let Some(more) = p.json["sites_by_bytes_allocated"].as_array() {
        sites.extend(more.iter().map(Site::from_json));
    }
    sites
}

/// The process of the report whose executable's file name is `name`.
fn process_named<'a>(run: &'a MemshimRun, name: &str) -> &'a ProcessReport {
    run.processes
        .iter()
        .find(|p| Path::new(&p.exe()).file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| {
            panic!(
                "no process {name} in {:?}",
                run.processes.iter().map(|p| p.exe()).collect::<Vec<_>>()
            )
        })
}

/// The process of `run` that ran `prog`.
fn process_of<'a>(run: &'a MemshimRun, prog: &Path) -> &'a ProcessReport {
    process_named(run, prog.file_name().unwrap().to_str().unwrap())
}

/// `prog args` under `memcollect run flags`, checked to have exited 0.
fn run_ok<S: AsRef<OsStr>>(prog: &Path, args: &[S], flags: &[&str], dir: &Path) -> MemshimRun {
    let run = memcollect_run(prog, args, flags, dir);
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    run
}

/// Checks that `site` holds, contiguously from the frame named `chain[0]`,
/// exactly the frames of `chain`: (function predicate text, marked line).
fn assert_chain(
    site: &Site,
    source: &str,
    chain: &[(&str, u32)],
    exact: &dyn Fn(&str, &str) -> bool,
) {
    let start = site
        .frames
        .iter()
        .position(|f| f.function.as_deref().is_some_and(|n| exact(n, chain[0].0)))
        .unwrap_or_else(|| panic!("no frame {} in {}", chain[0].0, site.describe()));
    let frames = &site.frames[start..];
    assert!(
        frames.len() >= chain.len(),
        "stack cut short: {}",
        site.describe()
    );
    for (i, ((name, line), f)) in chain.iter().zip(frames).enumerate() {
        let got = f.function.as_deref().unwrap_or("");
        assert!(
            exact(got, name),
            "frame {i}: expected {name}, got {got}; {}",
            site.describe()
        );
        assert_eq!(
            f.line,
            Some(*line as i64),
            "line of {name}: {}",
            site.describe()
        );
        let file = f.file.as_deref().unwrap_or("");
        assert!(
            file.ends_with(source),
            "file of {name}: {file}; {}",
            site.describe()
        );
    }
}

/// The chain main -> level_1 -> ... -> level_12 innermost first, with lines:
/// each level at the line of its call, the innermost at `@alloc`.
fn c_chain(m: &HashMap<String, u32>, main_mark: &str) -> Vec<(String, u32)> {
    let mut chain = vec![("level_12".to_owned(), m["alloc"])];
    for k in (1..=11).rev() {
        chain.push((format!("level_{k}"), m[&format!("call{k}")]));
    }
    chain.push(("main".into(), m[main_mark]));
    chain
}

fn borrowed(chain: &[(String, u32)]) -> Vec<(&str, u32)> {
    chain.iter().map(|(n, l)| (n.as_str(), *l)).collect()
}

fn site_with_bytes(sites: &[Site], bytes: i64) -> &Site {
    sites
        .iter()
        .find(|s| s.bytes_allocated == bytes)
        .unwrap_or_else(|| {
            panic!(
                "no site of {bytes} bytes in {:#?}",
                sites.iter().map(Site::describe).collect::<Vec<_>>()
            )
        })
}

#[test]
fn c_chain_of_12_frames_with_an_inlined_one_is_complete_and_in_order() {
    let prog = programs::program_with("stacks_c.c", OPT, "_o2");
    let dir = programs::scratch();
    let run = run_ok(&prog, &[] as &[&str], &["--group", "function"], dir.path());
    let p = process_of(&run, &prog);
    let sites = all_sites(p);
    let m = marks("stacks_c.c");
    let eq = |a: &str, b: &str| a == b;
    // level_1(0) from @main allocates 123457 bytes, level_1(1) from @main2 one more.
    assert_chain(
        site_with_bytes(&sites, 123_457),
        "stacks_c.c",
        &borrowed(&c_chain(&m, "main")),
        &eq,
    );
    assert_chain(
        site_with_bytes(&sites, 123_458),
        "stacks_c.c",
        &borrowed(&c_chain(&m, "main2")),
        &eq,
    );
    // --group function: the two sites are one function.
    let groups = p.json["groups"].as_array().expect("groups");
    let g = groups
        .iter()
        .find(|g| g["key"] == "level_12")
        .unwrap_or_else(|| panic!("no level_12 group in {groups:?}"));
    assert_eq!(g["sites"], 2, "{g}");
    assert_eq!(g["bytes_allocated"], 123_457 + 123_458, "{g}");
    assert_eq!(g["alloc_calls"], 2, "{g}");
    assert_eq!(p.json["group_by"], "function");
}

#[test]
fn cpp_chain_has_demangled_names_and_lines() {
    let prog = programs::program_with("stacks_cpp.cpp", OPT, "_o2");
    let dir = programs::scratch();
    let run = run_ok(&prog, &[] as &[&str], &["--group", "file"], dir.path());
    let p = process_of(&run, &prog);
    let sites = all_sites(p);
    let m = marks("stacks_cpp.cpp");
    let mut chain = vec![("ns::Widget::make(int)".to_owned(), m["alloc"])];
    for k in (1..=11).rev() {
        chain.push((format!("ns::level_{k}(int)"), m[&format!("call{k}")]));
    }
    chain.push(("main".into(), m["main"]));
    // An inlined function is named by its DWARF name (`level_6`), without its
    // namespace and parameters; the others by their demangled linkage names.
    let eq = |got: &str, want: &str| {
        got == want
            || (want == "ns::level_6(int)" && (got == "level_6" || got.starts_with("ns::level_6")))
    };
    // 4 Widgets of 4000 bytes.
    let site = site_with_bytes(&sites, 16_000);
    assert_chain(site, "stacks_cpp.cpp", &borrowed(&chain), &eq);
    assert!(
        site.functions()
            .first()
            .is_some_and(|f| f.starts_with("operator new")),
        "innermost frame: {}",
        site.describe()
    );
    let groups = p.json["groups"].as_array().expect("groups");
    assert!(
        groups.iter().any(|g| g["key"]
            .as_str()
            .is_some_and(|k| k.ends_with("stacks_cpp.cpp"))
            && g["bytes_allocated"].as_i64() >= Some(16_000)),
        "{groups:?}"
    );
}

#[test]
fn rust_chain_has_demangled_paths_and_lines() {
    let prog = programs::program_with("stacks_rust.rs", &["-g"], "_g");
    let dir = programs::scratch();
    let run = run_ok(&prog, &[] as &[&str], &[], dir.path());
    let p = process_of(&run, &prog);
    let sites = all_sites(p);
    let m = marks("stacks_rust.rs");
    let mut chain = vec![("stacks_rust::level_12".to_owned(), m["alloc"])];
    for k in (1..=11).rev() {
        chain.push((format!("stacks_rust::level_{k}"), m[&format!("call{k}")]));
    }
    chain.push(("stacks_rust::main".into(), m["main"]));
    let eq = |a: &str, b: &str| a == b;
    assert_chain(
        site_with_bytes(&sites, 98_766),
        "stacks_rust.rs",
        &borrowed(&chain),
        &eq,
    );
}

fn objcopy(args: &[&str], dir: &Path) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stripped_binary_is_symbolized_from_its_debug_link() {
    if !have_command("objcopy") || !have_command("strip") {
        skip_notice("stripped binary test", "objcopy/strip missing");
        return;
    }
    let dir = programs::scratch();
    let d = dir.path();
    std::fs::copy(
        programs::program_with("stacks_c.c", OPT, "_o2"),
        d.join("prog"),
    )
    .unwrap();
    objcopy(&["objcopy", "--only-keep-debug", "prog", "prog.debug"], d);
    objcopy(&["strip", "-g", "prog"], d);
    objcopy(&["objcopy", "--add-gnu-debuglink=prog.debug", "prog"], d);
    let readelf = Command::new("readelf")
        .args(["-S", "prog"])
        .current_dir(d)
        .output();
    if let Ok(r) = readelf {
        let sections = String::from_utf8_lossy(&r.stdout);
        assert!(!sections.contains(".debug_info"), "prog still has DWARF");
        assert!(sections.contains(".gnu_debuglink"));
    }
    let run = memcollect_run(&d.join("prog"), &[] as &[&str], &[], d);
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let p = process_named(&run, "prog");
    let sites = all_sites(p);
    let m = marks("stacks_c.c");
    let eq = |a: &str, b: &str| a == b;
    assert_chain(
        site_with_bytes(&sites, 123_457),
        "stacks_c.c",
        &borrowed(&c_chain(&m, "main")),
        &eq,
    );
}

#[test]
fn dlclosed_library_site_stays_named() {
    let lib = programs::program_with("stacks_plugin.c", &["-O2", "-shared", "-fPIC"], "_so");
    let prog = programs::program_with("stacks_dlopen.c", &["-O2"], "");
    let dir = programs::scratch();
    let run = run_ok(&prog, &[&lib], &[], dir.path());
    assert_eq!(run.output.stdout_str(), "1\n");
    let p = process_of(&run, &prog);
    let sites = all_sites(p);
    let site = site_with_bytes(&sites, 54_322);
    assert_eq!(
        site.live_bytes,
        54_322,
        "the block stays live: {}",
        site.describe()
    );
    let m = marks("stacks_plugin.c");
    let eq = |a: &str, b: &str| a == b;
    let chain = [
        ("plugin_make", m["plugin_alloc"]),
        ("plugin_entry", m["plugin_call"]),
    ];
    assert_chain(site, "stacks_plugin.c", &chain, &eq);
    let module = site.frames[0].module.as_deref().unwrap_or("");
    assert_eq!(module, lib.to_str().unwrap(), "{}", site.describe());
}

#[test]
fn libraries_loaded_and_unloaded_while_threads_allocate_lose_nothing() {
    // Every dlopen and dlclose replaces the unwinder's module snapshot while
    // two threads unwind through it without pause: a reader left holding a
    // freed snapshot would crash the program or corrupt its stacks.
    let lib = programs::program_with("stacks_plugin.c", &["-O2", "-shared", "-fPIC"], "_so");
    let prog = programs::program_with("stacks_dlopen_race.c", &["-O2", "-pthread"], "");
    let dir = programs::scratch();
    let run = run_ok(&prog, &[&lib], &["--top", "100"], dir.path());
    let out = run.output.stdout_str();
    let blocks: i64 = out
        .strip_prefix("ok ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    let sites = all_sites(process_of(&run, &prog));
    let calls_of = |function: &str| -> (i64, i64) {
        let mut seen = std::collections::HashSet::new();
        sites
            .iter()
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|f| f.function.as_deref() == Some(function))
            })
            .filter(|s| seen.insert(s.json["id"].to_string()))
            .fold((0, 0), |(c, b), s| {
                (c + s.alloc_calls, b + s.bytes_allocated)
            })
    };
    assert_eq!(calls_of("worker_alloc"), (blocks, blocks * 333));
    assert_eq!(calls_of("plugin_make"), (300, 300 * 54_322));
}

#[test]
fn binary_rebuilt_after_the_run_is_reported_as_changed_not_misnamed() {
    let m = memshim();
    let dir = programs::scratch();
    let d = dir.path();
    let prog = d.join("prog");
    std::fs::copy(programs::program_with("stacks_c.c", OPT, "_o2"), &prog).unwrap();
    let trace = d.join("prog.mst");
    let mut cmd = Command::new(&prog);
    scrub_env(&mut cmd)
        .env("LD_PRELOAD", &m.shim)
        .env("MEMSHIM_OUTPUT", &trace)
        .env("MEMSHIM_SOCKET", d.join("nobody.sock"));
    let out = run_captured(&mut cmd, d, DEFAULT_TIMEOUT);
    assert_eq!(out.code(), 0, "{}", out.stderr_str());
    assert!(trace.is_file(), "no trace written: {}", out.stderr_str());
    // Rebuild: different code (and build-id) at the same path.
    let rebuilt = programs::program_with("stacks_c.c", &["-O2", "-DREBUILT", "-g"], "_rebuilt");
    std::fs::copy(&rebuilt, &prog).unwrap();
    let report = Command::new(&m.memcollect)
        .args(["report", "--format", "json", "--top", "50"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let json: Value = serde_json::from_slice(&report.stdout).unwrap();
    let p = ProcessReport::from_json(&json["processes"][0]);
    let sites = all_sites(&p);
    let site = site_with_bytes(&sites, 123_457);
    let prog_path = prog.to_str().unwrap();
    let ours: Vec<_> = site
        .frames
        .iter()
        .filter(|f| f.module.as_deref() == Some(prog_path))
        .collect();
    assert!(ours.len() >= 12, "{}", site.describe());
    for f in &ours {
        assert_eq!(f.function.as_deref(), Some(CHANGED), "{}", site.describe());
        assert_eq!(f.line, None, "{}", site.describe());
    }
    // libc did not change: still named.
    assert!(
        site.functions()
            .iter()
            .any(|f| f.starts_with("__libc_start")),
        "{}",
        site.describe()
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const PY_SCRIPT: &str = "\
keep = []
def alloc_in_alpha():
    keep.extend(str(i) * 40 for i in range(3000))
def alloc_in_beta():
    keep.extend([i, i] for i in range(3000))
def alloc_in_gamma():
    keep.extend({i: i} for i in range(3000))
alloc_in_alpha()
alloc_in_beta()
alloc_in_gamma()
print(len(keep))
";

#[test]
fn python_native_frames_are_named_with_pythonmalloc_set() {
    let Some(py) = real_python() else { return };
    let dir = programs::scratch();
    let script = write(dir.path(), "three.py", PY_SCRIPT);
    let run = memcollect_run(&py, &[&script], &["--top", "10"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    assert_eq!(run.output.stdout_str(), "9000\n");
    let err = run.output.stderr_str();
    assert!(
        err.contains("memcollect: set PYTHONMALLOC=malloc so that Python objects are seen; --no-interpreter-env to disable"),
        "{err}"
    );
    let p = run
        .processes
        .iter()
        .max_by_key(|p| p.totals.alloc_calls)
        .unwrap();
    // With PYTHONMALLOC=malloc every object is a malloc: 9,000 objects at least.
    assert!(p.totals.alloc_calls >= 9000, "{:?}", p.totals);
    for s in p.sites.iter().take(10) {
        let first = s.functions().first().copied().unwrap_or("??");
        assert!(first != "??", "?? at the top: {}", s.describe());
    }
    // The evaluator's frames are replaced by the Python functions it ran.
    // (The script's objects are freed by the time it exits: sites by bytes allocated.)
    let by_allocated = p.json["sites_by_bytes_allocated"].as_array().unwrap();
    for function in ["alloc_in_alpha", "alloc_in_beta", "alloc_in_gamma"] {
        assert!(
            by_allocated
                .iter()
                .map(report::Site::from_json)
                .any(|s| s.functions().contains(&function)),
            "no site names the Python function {function}"
        );
    }
}

const NODE_SCRIPT: &str = "\
const keep = [];
function allocInAlpha(i) { keep.push(Buffer.alloc(300000 + i)); }
function allocInBeta(i) { keep.push(new Float64Array(50000 + i)); }
function allocInGamma(i) { keep.push(Buffer.allocUnsafeSlow(200000 + i)); }
for (let i = 0; i < 50; i++) { allocInAlpha(i); allocInBeta(i); allocInGamma(i); }
console.log(keep.length);
";

#[test]
fn node_js_functions_are_named_from_the_perf_map() {
    if !have_command("node") {
        skip_notice("node test", "node is not installed");
        return;
    }
    let dir = programs::scratch();
    let script = write(dir.path(), "three.js", NODE_SCRIPT);
    let node = PathBuf::from("node");
    let run = memcollect_run(&node, &[&script], &["--top", "30"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    assert_eq!(run.output.stdout_str(), "150\n");
    assert!(run.output.stderr_str().contains("--perf-basic-prof"));
    let p = process_named(&run, "node");
    let sites = all_sites(p);
    let script_path = script.to_str().unwrap();
    for name in ["allocInAlpha", "allocInBeta", "allocInGamma"] {
        let frame = sites
            .iter()
            .flat_map(|s| s.frames.iter())
            .find(|f| f.function.as_deref().is_some_and(|n| n.contains(name)))
            .unwrap_or_else(|| {
                panic!(
                    "no frame names {name}: {:#?}",
                    sites.iter().take(5).map(Site::describe).collect::<Vec<_>>()
                )
            });
        assert_eq!(frame.module.as_deref(), Some("[jit]"));
        assert_eq!(frame.file.as_deref(), Some(script_path));
        assert!(
            frame.line.is_some_and(|l| (2..=4).contains(&l)),
            "{frame:?}"
        );
    }
    // The perf map that memcollect asked for is removed after the report.
    assert!(!Path::new(&format!("/tmp/perf-{}.map", p.pid)).exists());
}

/// Every site of a report, as (functions with lines, calls, bytes), sorted.
fn site_set(report: &Value) -> Vec<(Vec<String>, i64, i64)> {
    let mut sites: Vec<(Vec<String>, i64, i64)> = report["processes"][0]["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(Site::from_json)
        .map(|s| {
            let frames = s
                .frames
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}",
                        f.function.as_deref().unwrap_or("?"),
                        f.line.unwrap_or(0)
                    )
                })
                .collect();
            (frames, s.alloc_calls, s.bytes_allocated)
        })
        .collect();
    sites.sort();
    sites
}

#[test]
fn memoized_unwinds_equal_fresh_ones() {
    // Without frame pointers (rbp is then a plain register whose saved
    // values the memo must not compare) and with them (rbp then locates
    // frames, and the memo must compare it).
    let builds = [
        ("opt", programs::program_with("unwind_paths.c", OPT, "opt")),
        (
            "fp",
            programs::program_with(
                "unwind_paths.c",
                &["-O2", "-fno-omit-frame-pointer", "-g"],
                "fp",
            ),
        ),
    ];
    for (build, prog) in &builds {
        memo_equals_fresh(build, prog);
    }
}

fn memo_equals_fresh(build: &str, prog: &Path) {
    let dir = programs::scratch();
    let report = |memo: &str, depth: &str| -> Value {
        let trace = dir.path().join(format!("memo-{memo}-{depth}.mst"));
        let mut cmd = Command::new(prog);
        scrub_env(&mut cmd)
            .env("LD_PRELOAD", paths::shim_path())
            .env("MEMSHIM_SOCKET", dir.path().join("none.sock"))
            .env("MEMSHIM_OUTPUT", &trace)
            .env("MEMSHIM_STACK_DEPTH", depth)
            .env("MEMSHIM_UNWIND_MEMO", memo);
        let out = run_captured(&mut cmd, dir.path(), DEFAULT_TIMEOUT);
        assert_eq!(out.code(), 0, "{}", out.stderr_str());
        let mut cmd = Command::new(paths::memcollect_path());
        cmd.args(["report", "--format", "json", "--top", "1000000"])
            .arg(&trace);
        let out = run_captured(&mut cmd, dir.path(), DEFAULT_TIMEOUT);
        assert_eq!(out.code(), 0, "{}", out.stderr_str());
        serde_json::from_slice(&out.stdout).expect("json report")
    };
    // Full stacks; and stacks cut at 6 frames, so that a capture often
    // reuses a cut record and must go on unwinding past its end.
    for (depth, min_sites) in [("64", 1_000), ("6", 100)] {
        let memo = site_set(&report("1", depth));
        let fresh = site_set(&report("0", depth));
        // 20,000 calls over paths 0 to 6 deep through 4 functions: many of
        // the 5,461 possible paths, each with up to 4 sizes.
        let calls: i64 = memo
            .iter()
            .filter(|s| s.0.iter().any(|f| f.starts_with("step")))
            .map(|s| s.1)
            .sum();
        assert_eq!(calls, 20_000, "allocations from the program's own paths");
        assert!(
            memo.len() > min_sites,
            "{build}, depth {depth}: only {} distinct sites",
            memo.len()
        );
        assert_eq!(
            memo.len(),
            fresh.len(),
            "{build}, depth {depth}: site count with and without the memo"
        );
        for (m, f) in memo.iter().zip(&fresh) {
            assert_eq!(m, f, "{build}, depth {depth}: a site differs with the memo");
        }
    }
}

//! Three functions leak 100 x 24 B, 10 x 4096 B and 1 x 1 MiB from distinct
//! sites; everything else is freed.

use memshim_tests::*;

const FILE: &str = "leak_sites.c";

#[test]
fn valgrind_agrees_with_tally() {
    check_valgrind_single(FILE, "leak_sites", BASE_C);
}

#[test]
fn memshim_totals_equal_tally() {
    check_memshim_single(FILE, "leak_sites", BASE_C);
}

#[test]
fn memshim_top_sites_are_the_three_leaks() {
    let dir = programs::scratch();
    let run = memcollect_run(&program(FILE), &[] as &[&str], &["--top", "10"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (p, _) = run.process_of("leak_sites");
    let all: Vec<String> = p.sites.iter().map(|s| s.describe()).collect();
    assert!(
        p.sites.len() >= 3,
        "expected at least 3 sites, got:\n{}",
        all.join("\n")
    );
    // (function, live bytes, live blocks, alloc calls), sorted by live bytes.
    let expected = [
        ("leak_one_mebibyte", 1_048_576, 1, 1),
        ("leak_pages", 40_960, 10, 10),
        ("leak_small_objects", 2_400, 100, 100),
    ];
    let mut m = Mismatches::default();
    for (i, (func, bytes, blocks, calls)) in expected.iter().enumerate() {
        let s = &p.sites[i];
        m.eq(
            &format!("sites[{i}].live_bytes ({func})"),
            s.live_bytes,
            *bytes,
        );
        m.eq(
            &format!("sites[{i}].live_blocks ({func})"),
            s.live_blocks,
            *blocks,
        );
        m.eq(
            &format!("sites[{i}].alloc_calls ({func})"),
            s.alloc_calls,
            *calls,
        );
        m.eq(
            &format!("sites[{i}].bytes_allocated ({func})"),
            s.bytes_allocated,
            *bytes,
        );
        // a leak site's live bytes only grow: its peak is what it holds at exit
        m.eq(
            &format!("sites[{i}].peak_bytes ({func})"),
            s.peak_bytes,
            *bytes,
        );
        m.check(
            s.functions().iter().any(|f| f == func),
            format!("sites[{i}] should name {func}: {}", s.describe()),
        );
        m.check(
            s.functions().contains(&"main"),
            format!("sites[{i}] should have main in its stack: {}", s.describe()),
        );
        m.check(
            !s.frames
                .iter()
                .any(|f| f.module.as_deref().unwrap_or("").contains("libmemshim")),
            format!("sites[{i}] has a frame in libmemshim.so: {}", s.describe()),
        );
    }
    // Every other site is fully freed.
    for (i, s) in p.sites.iter().enumerate().skip(3) {
        m.eq(&format!("sites[{i}].live_bytes"), s.live_bytes, 0);
    }
    // The sites add up to the totals.
    let sum: i64 = p.sites.iter().map(|s| s.live_bytes).sum();
    m.eq("sum of sites' live_bytes", sum, p.totals.live_bytes);
    m.finish(&format!("leak sites; all sites:\n{}", all.join("\n")));
}

#[test]
fn memshim_text_report_names_the_leaks() {
    let dir = programs::scratch();
    let out_file = dir.path().join("report.txt");
    let mut cmd = std::process::Command::new(memshim().memcollect);
    cmd.args(["run", "--format", "text", "--top", "10", "--output"])
        .arg(&out_file);
    cmd.arg("--").arg(program(FILE)).current_dir(dir.path());
    scrub_env(&mut cmd);
    let out = run_captured(&mut cmd, dir.path(), RUN_TIMEOUT);
    assert_eq!(out.code(), 0, "{}", out.stderr_str());
    let text = std::fs::read_to_string(&out_file).expect("text report");
    for f in ["leak_one_mebibyte", "leak_pages", "leak_small_objects"] {
        assert!(
            text.contains(f),
            "the text report does not name {f}:\n{text}"
        );
    }
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_str());
}

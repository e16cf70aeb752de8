//! The analysis engine end to end: exact distributions, growth-based leak
//! detection while a program runs, peak owners, internal fragmentation and
//! recommendations, on programs whose numbers are known by construction.

use std::time::Duration;

use memshim_tests::serving::{entries_for, site_with, Collector};
use memshim_tests::*;
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn run_json(file: &str, args: &[&str]) -> (MemshimRun, Value) {
    let dir = programs::scratch();
    let run = memcollect_run(&program(file), args, &["--top", "50"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let p = run
        .processes
        .iter()
        .find(|p| p.exe().contains("analysis_"))
        .unwrap_or_else(|| panic!("no process for {file}"))
        .json
        .clone();
    (run, p)
}

#[test]
fn fixed_sizes_and_lifetimes_give_exact_percentiles_and_censored_blocks() {
    let (run, p) = run_json("analysis_dist.c", &[]);
    let fixed = site_with(&p, "fixed_alloc").expect("fixed_alloc site");
    let s = &fixed["size_histogram"];
    assert_eq!(
        (
            u(&s["count"]),
            u(&s["p50"]),
            u(&s["p90"]),
            u(&s["p99"]),
            u(&s["max"])
        ),
        (100, 64, 1024, 4096, 4096),
        "{s}"
    );
    assert_eq!(s["exact"], true);
    let l = &fixed["lifetime_histogram"];
    assert_eq!(
        (
            u(&l["count"]),
            u(&l["censored"]),
            u(&l["p50"]),
            u(&l["p99"]),
            u(&l["max"])
        ),
        (100, 0, 0, 0, 0),
        "{l}"
    );

    let held = site_with(&p, "held_alloc").expect("held_alloc site");
    let l = &held["lifetime_histogram"];
    assert_eq!(u(&l["count"]), 10, "{l}");
    assert_eq!(
        u(&l["censored"]),
        10,
        "the 10 blocks live at exit are censored: {l}"
    );
    let line = run.output.stderr_str();
    let bounds: Vec<u64> = line
        .lines()
        .find_map(|l| l.strip_prefix("held_lifetime_ns "))
        .expect("bounds line")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (lo, hi) = (bounds[0] / 1_000_000, bounds[1] / 1_000_000);
    for k in ["p50", "p90", "p99", "max", "min"] {
        let v = u(&l[k]);
        assert!(
            v >= lo && v <= hi,
            "{k} = {v} ms outside the program's own bounds [{lo}, {hi}]"
        );
    }
    assert_eq!(u(&held["size_histogram"]["p50"]), 256);
    assert!(u(&p["lifetime_histogram"]["censored"]) >= 10);
}

#[test]
fn a_growing_site_is_flagged_while_it_runs_and_a_churning_one_is_not() {
    let dir = programs::scratch();
    let prog = program("analysis_growth.c");
    let collector = Collector::start(dir.path());
    let child = collector.spawn(&prog, &["3000"]);
    std::thread::sleep(Duration::from_millis(2_000));
    let p = collector.report_of(child.pid(), 20);
    let out = child.wait(Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stderr_str());
    assert_eq!(p["exit"], "running", "the report was taken while it ran");
    let growth = &p["growth"];
    let leak = entries_for(growth, "leak_step");
    assert_eq!(leak.len(), 1, "leak_step flagged once: {growth:#}");
    let leak = leak[0];
    assert_eq!(leak["classification"], "leak", "{leak:#}");
    let rate = leak["bytes_per_second"].as_f64().unwrap();
    eprintln!(
        "measured growth {rate:.0} B/s (expected 409600), r2 {}",
        leak["r2"]
    );
    assert!(
        (rate - 409_600.0).abs() <= 40_960.0,
        "rate {rate} not within 10% of 409600 B/s"
    );
    assert!(
        leak["severity"] == "high" || leak["severity"] == "medium",
        "{leak:#}"
    );
    assert!(
        entries_for(growth, "churn_step").is_empty(),
        "the flat churn must not be flagged: {growth:#}"
    );
    let churn = site_with(&p, "churn_step").expect("churn site");
    assert!(u(&churn["alloc_calls"]) > 10_000, "{churn:#}");
    // Recommendations: fix the leak (saving its live bytes), pool the churn (allocations/s).
    let recs = &p["recommendations"];
    let fix = entries_for(recs, "leak_step");
    assert!(
        fix.iter()
            .any(|r| r["kind"] == "fix_leak" && u(&r["estimated_savings_bytes"]) > 0),
        "{recs:#}"
    );
    let pool = entries_for(recs, "churn_step");
    assert!(
        pool.iter().any(|r| r["kind"] == "pool"
            && r["estimated_savings_allocs_per_second"].as_f64().unwrap() > 1000.0),
        "{recs:#}"
    );
}

#[test]
fn the_mid_run_peak_is_owned_by_the_site_that_freed_it() {
    let (_, p) = run_json("analysis_peak.c", &[]);
    let peak = &p["peak"];
    let owner = &peak["owners"][0];
    assert_eq!(owner["function"], "build_big_buffer", "{peak:#}");
    assert_eq!(u(&owner["bytes"]), 50 << 20);
    assert_eq!(u(&owner["live_bytes_now"]), 0);
    assert!(u(&peak["bytes"]) >= (50 << 20) + 512 * 1024);
    assert_eq!(u(&peak["bytes"]), u(&p["totals"]["peak_bytes"]));
    let recs = entries_for(&p["recommendations"], "build_big_buffer");
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "stream" && u(&r["estimated_savings_bytes"]) == 50 << 20),
        "{recs:?}"
    );
}

#[test]
fn internal_fragmentation_equals_malloc_usable_size() {
    let (run, p) = run_json("analysis_frag.c", &[]);
    let line = run.output.stderr_str();
    let sums: Vec<u64> = line
        .lines()
        .find_map(|l| l.strip_prefix("frag "))
        .expect("frag line")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let kib = site_with(&p, "alloc_kib").expect("alloc_kib site");
    let small = site_with(&p, "alloc_small").expect("alloc_small site");
    assert_eq!(u(&kib["internal_fragmentation_bytes"]), sums[0]);
    assert_eq!(u(&kib["usable_bytes"]) - u(&kib["live_bytes"]), sums[0]);
    assert_eq!(u(&small["internal_fragmentation_bytes"]), sums[1]);
    let f = &p["fragmentation"];
    assert_eq!(
        u(&f["internal_bytes"]),
        u(&f["usable_bytes"]) - u(&f["requested_bytes"])
    );
    assert!(u(&f["internal_bytes"]) >= sums[0] + sums[1]);
    eprintln!(
        "internal fragmentation: 1 KiB site {} B, 24 B site {} B",
        sums[0], sums[1]
    );
}

#[test]
fn realloc_chains_get_a_reserve_recommendation_and_a_clean_program_none() {
    let (_, p) = run_json("analysis_recs.c", &["realloc"]);
    let recs = entries_for(&p["recommendations"], "grow");
    let reserve = recs
        .iter()
        .find(|r| r["kind"] == "reserve")
        .unwrap_or_else(|| panic!("{:#}", p["recommendations"]));
    assert!(u(&reserve["estimated_savings_bytes"]) > 0);
    let site = site_with(&p, "grow").unwrap();
    assert_eq!(u(&site["max_realloc_chain"]), 63, "{site:#}");
    assert_eq!(u(&site["realloc_grows"]), 200 * 63);

    let (_, clean) = run_json("analysis_recs.c", &["clean"]);
    assert_eq!(
        clean["recommendations"],
        Value::Array(vec![]),
        "{:#}",
        clean["recommendations"]
    );
    assert_eq!(clean["growth"], Value::Array(vec![]));
}

#[test]
fn categories_sum_the_sites_they_match_and_a_bad_file_is_one_error_line() {
    let dir = programs::scratch();
    let cats = dir.path().join("categories.txt");
    std::fs::write(
        &cats,
        "# test\nKib = function:alloc_kib\nSmall = function:alloc_sm* | module:nothing.so\n",
    )
    .unwrap();
    let cats_arg = cats.to_str().unwrap();
    let run = memcollect_run(
        &program("analysis_frag.c"),
        &[] as &[&str],
        &["--categories", cats_arg],
        dir.path(),
    );
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let p = &run
        .processes
        .iter()
        .find(|p| p.exe().contains("analysis_"))
        .unwrap()
        .json;
    let find = |name: &str| {
        p["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {:#}", p["categories"]))
    };
    assert_eq!(
        (
            u(&find("Kib")["live_bytes"]),
            u(&find("Kib")["live_blocks"])
        ),
        (1_024_000, 1_000)
    );
    assert_eq!(
        (u(&find("Small")["live_bytes"]), u(&find("Small")["sites"])),
        (24_000, 1)
    );
    assert_eq!(site_with(p, "alloc_kib").unwrap()["category"], "Kib");

    std::fs::write(&cats, "Kib function alloc_kib\n").unwrap();
    let m = memshim();
    let mut cmd = std::process::Command::new(&m.memcollect);
    cmd.args(["run", "--categories", cats_arg, "--", "true"]);
    scrub_env(&mut cmd);
    let out = run_captured(&mut cmd, dir.path(), Duration::from_secs(60));
    assert_ne!(out.code(), 0);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("line 1"), "{lines:?}");
}

//! Sampled mode: the scaled estimates are unbiased and their printed 99 %
//! intervals are honest. A program with known per-site totals is run 100
//! times with fixed seeds (MEMSHIM_SAMPLE_SEED=1..100) at one sample per
//! 64 KiB; each site's estimated bytes must fall within the printed interval
//! of the truth in at least 95 runs.

use std::process::Command;
use std::time::Duration;

use memshim_tests::*;
use serde_json::Value;

const SITES: [(&str, f64); 3] = [
    ("many_small", 20_000.0 * 64.0),
    ("some_medium", 3_000.0 * 500.0),
    ("few_large", 50.0 * 100.0 * 1024.0),
];

fn site<'a>(process: &'a Value, function: &str) -> Option<&'a Value> {
    process["sites_by_bytes_allocated"]
        .as_array()?
        .iter()
        .find(|s| {
            s["frames"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["function"] == function))
        })
}

#[test]
fn sampled_estimates_fall_within_their_printed_intervals() {
    let m = memshim();
    let prog = program("sampled_sites.c");
    let dir = memshim_tests::programs::scratch();
    let mut covered = [0usize; 3];
    let mut estimates = [0f64; 3];
    for seed in 1..=100u64 {
        let report = dir.path().join(format!("r{seed}.json"));
        let mut cmd = Command::new(&m.memcollect);
        cmd.args([
            "run",
            "--sample-bytes",
            "65536",
            "--top",
            "10",
            "--format",
            "json",
            "--output",
        ])
        .arg(&report)
        .arg("--")
        .arg(&prog)
        .env("MEMSHIM_SAMPLE_SEED", seed.to_string());
        let out = run_captured(&mut cmd, dir.path(), Duration::from_secs(30));
        assert_eq!(out.code(), 0, "seed {seed}: {}", out.stderr_str());
        let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let process = &json["processes"][0];
        assert_eq!(process["sample_bytes"], 65536);
        for (i, (function, truth)) in SITES.iter().enumerate() {
            let Some(s) = site(process, function) else {
                // No sample fell in this site in this run: its estimate is 0.
                continue;
            };
            let e = &s["estimate"]["bytes_allocated"];
            let (value, ci) = (e["value"].as_f64().unwrap(), e["ci99"].as_f64().unwrap());
            estimates[i] += value / 100.0;
            if (value - truth).abs() <= ci {
                covered[i] += 1;
            }
        }
    }
    for (i, (function, truth)) in SITES.iter().enumerate() {
        eprintln!(
            "{function}: truth {truth} B, mean estimate {:.0} B, within the interval in {} of 100 runs",
            estimates[i], covered[i]
        );
        assert!(
            covered[i] >= 95,
            "{function}: truth {truth} B within the interval in {} of 100 runs (mean estimate {:.0} B)",
            covered[i],
            estimates[i]
        );
        // Unbiased: the mean of 100 estimates is close to the truth.
        assert!(
            (estimates[i] - truth).abs() / truth < 0.1,
            "{function}: mean estimate {:.0} B against {truth} B",
            estimates[i]
        );
    }
}

/// When sampling, only the frees of sampled blocks are recorded (the rest
/// skip the queue after one table lookup). A sampled block whose free were
/// missed would stay live in the report. Blocks of at least the sampling
/// mean are always sampled, so live bytes are exact here, whatever the
/// seed (three runs, seeded from the clock).
#[test]
fn frees_of_sampled_blocks_are_all_seen() {
    let dir = memshim_tests::programs::scratch();
    for round in 0..3 {
        let run = memcollect_run(
            &program("sampled_frees.c"),
            &[] as &[&str],
            &["--sample-bytes", "65536", "--top", "50"],
            dir.path(),
        );
        assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
        let p = &run.processes[0];
        // By the allocating frame: a block the C library allocates below one
        // of these functions (the new thread's TLS vector, under
        // `drop_elsewhere`'s `pthread_create`) may be sampled too, and it
        // stays live on purpose (glibc caches the thread's stack with it).
        let live = |function: &str| -> (i64, i64) {
            p.sites
                .iter()
                .filter(|s| s.frames.first().and_then(|f| f.function.as_deref()) == Some(function))
                .fold((0, 0), |(b, n), s| (b + s.live_bytes, n + s.live_blocks))
        };
        let mut m = Mismatches::default();
        let expected = [
            ("keep_large", 4_000_000, 40),
            ("grow_small_to_large", 2_000_000, 10),
            ("drop_large", 0, 0),
            ("drop_elsewhere", 0, 0),
            ("grow_large", 0, 0),
            ("churn_small", 0, 0),
            ("calloc_large", 0, 0),
        ];
        for (function, bytes, blocks) in expected {
            let (b, n) = live(function);
            m.eq(&format!("{function} live bytes"), b, bytes);
            m.eq(&format!("{function} live blocks"), n, blocks);
        }
        let sites: Vec<String> = p.sites.iter().map(|s| s.describe()).collect();
        m.finish(&format!("round {round}; sites:\n{}", sites.join("\n")));
    }
}

//! A Rust program (rustc -O) with Vec/Box/String/HashMap churn and a known
//! leak: a forgotten Vec<u64> of capacity 500 (4000 B) and a leaked
//! Box<[u8; 1000]>. Baseline: the empty Rust program.

use memshim_tests::*;

const LEAK_BYTES: i64 = 5000;
const LEAK_BLOCKS: i64 = 2;

#[test]
fn valgrind_sees_exactly_the_leak() {
    let Some(base) = valgrind_baseline(BASE_RUST) else {
        return;
    };
    let dir = programs::scratch();
    let Some(run) = valgrind_run(&program("rust_leaks.rs"), &[] as &[&str], dir.path()) else {
        return;
    };
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let v = run.single();
    let mut m = Mismatches::default();
    m.eq(
        "valgrind in use at exit (bytes) - baseline",
        v.in_use_bytes - base.in_use_bytes,
        LEAK_BYTES,
    );
    m.eq(
        "valgrind in use at exit (blocks) - baseline",
        v.in_use_blocks - base.in_use_blocks,
        LEAK_BLOCKS,
    );
    m.finish(&format!("valgrind rust_leaks {v:?} baseline {base:?}"));
}

#[test]
fn memshim_sees_exactly_the_leak() {
    let base = memshim_baseline(BASE_RUST);
    let dir = programs::scratch();
    let run = memcollect_run(
        &program("rust_leaks.rs"),
        &[] as &[&str],
        &["--top", "50"],
        dir.path(),
    );
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (p, _t) = run.process_of("rust_leaks");
    let a = p.totals;
    let mut m = Mismatches::default();
    m.eq(
        "totals.live_bytes - baseline",
        a.live_bytes - base.live_bytes,
        LEAK_BYTES,
    );
    m.eq(
        "totals.live_blocks - baseline",
        a.live_blocks - base.live_blocks,
        LEAK_BLOCKS,
    );
    m.eq("totals.lost_events", a.lost_events, 0);
    m.check(p.exit_code() == Some(0), format!("exit {}", p.exit));
    // Each leaked block is a site that names the leaking Rust function.
    for bytes in [4000, 1000] {
        match p
            .sites
            .iter()
            .find(|s| s.live_bytes == bytes && s.live_blocks == 1)
        {
            Some(s) => m.check(
                s.functions().iter().any(|f| f.contains("rust_leaks::leak")),
                format!(
                    "site of {bytes} B should name rust_leaks::leak: {}",
                    s.describe()
                ),
            ),
            None => m.check(
                false,
                format!(
                    "no site with one live block of {bytes} B: {:?}",
                    p.sites.iter().map(|s| s.describe()).collect::<Vec<_>>()
                ),
            ),
        }
    }
    // Same program, two tools: the same counts (each minus its own baseline).
    if let Some(vbase) = valgrind_baseline(BASE_RUST) {
        let vdir = programs::scratch();
        if let Some(vrun) = valgrind_run(&program("rust_leaks.rs"), &[] as &[&str], vdir.path()) {
            let v = vrun.single();
            m.eq(
                "blocks_allocated vs valgrind allocs",
                a.blocks_allocated - base.blocks_allocated,
                v.allocs - vbase.allocs,
            );
            m.eq(
                "blocks_freed vs valgrind frees",
                a.blocks_freed - base.blocks_freed,
                v.frees - vbase.frees,
            );
            m.eq(
                "bytes_allocated vs valgrind bytes",
                a.bytes_allocated - base.bytes_allocated,
                v.bytes_allocated - vbase.bytes_allocated,
            );
        }
    }
    m.finish(&format!(
        "memshim rust_leaks (totals {a:?}; baseline {base:?})"
    ));
}

//! 4 threads x 2.5 M malloc/free pairs (10 M in total) with address reuse,
//! and a deliberate leak of 4 x 1000 blocks of 48 bytes. The report's live
//! set must be exactly the leak, with no lost event. (Not run under valgrind:
//! too slow.)

use memshim_tests::*;

#[test]
fn memshim_live_set_is_exactly_the_leak() {
    let base = memshim_baseline(BASE_THREADS);
    let dir = programs::scratch();
    // ~20 s on 2 busy cores; 20 M recorded events.
    let run = memcollect_run_timeout(
        &program("stress.c"),
        &[] as &[&str],
        &["--top", "20"],
        dir.path(),
        std::time::Duration::from_secs(150),
    );
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (p, t) = run.process_of("stress");
    // The program's own counts: exactly 10 M pairs plus the leak.
    assert_eq!(
        (
            t.blocks_allocated,
            t.blocks_freed,
            t.live_blocks,
            t.live_bytes
        ),
        (10_004_000, 10_000_000, 4_000, 192_000),
        "the program's own tally"
    );
    let a = p.totals;
    let mut m = Mismatches::default();
    m.eq("totals.lost_events", a.lost_events, 0);
    m.eq(
        "totals.live_bytes - baseline",
        a.live_bytes - base.live_bytes,
        192_000,
    );
    m.eq(
        "totals.live_blocks - baseline",
        a.live_blocks - base.live_blocks,
        4_000,
    );
    m.eq(
        "totals.blocks_allocated - baseline",
        a.blocks_allocated - base.blocks_allocated,
        10_004_000,
    );
    m.eq(
        "totals.blocks_freed - baseline",
        a.blocks_freed - base.blocks_freed,
        10_000_000,
    );
    m.eq(
        "totals.bytes_allocated - baseline",
        a.bytes_allocated - base.bytes_allocated,
        t.bytes_allocated,
    );
    m.check(p.exit_code() == Some(0), format!("exit {}", p.exit));
    // The leak is one site (one call site in worker) of 4000 x 48 bytes.
    let leak = p.sites.iter().find(|s| s.live_blocks == 4_000);
    match leak {
        Some(s) => {
            m.eq("leak site live_bytes", s.live_bytes, 192_000);
            m.eq("leak site alloc_calls", s.alloc_calls, 4_000);
            m.check(
                s.functions().contains(&"worker"),
                format!("leak site should name worker: {}", s.describe()),
            );
        }
        None => m.check(
            false,
            format!(
                "no site with 4000 live blocks: {:?}",
                p.sites.iter().map(|s| s.describe()).collect::<Vec<_>>()
            ),
        ),
    }
    m.finish(&format!("stress (baseline {base:?}; totals {a:?})"));
}
